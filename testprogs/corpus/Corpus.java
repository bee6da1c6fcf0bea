// JVM workloads for the leaktrace corpus (Debian openjdk-17, compiled at run time with javac).
//
//   java [JVM flags] Corpus MODE SEED [ARGS]
//
//   bounded LIVE_MIB ALLOC_MIB_PER_SEC   a bounded live set (a ring of LIVE_MIB of byte[]) under heavy
//                                        allocation of short-lived garbage: the heap expands towards
//                                        -Xmx, then holds (run it with -XX:+UseG1GC)
//   warmup  LIVE_MIB WARM_SECS           a working set built over WARM_SECS, then held, with garbage
//                                        churn (run it with -XX:+UseParallelGC)
//   lru     ENTRIES VALUE_BYTES          a LinkedHashMap LRU cache (access order) under random
//                                        requests: warms up, then holds at ENTRIES
//   leak    RATE_BYTES_PER_SEC           retained objects growing at RATE (a static list never
//                                        cleared), plus garbage churn: a real leak
//
// Deterministic given SEED (sizes and keys; the JVM's own heap sizing is not).
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;

public class Corpus {
    static final int MIB = 1 << 20;
    static final ArrayList<byte[]> RETAINED = new ArrayList<>();
    static volatile long sink;

    static byte[] garbage(Random r, int n) {
        byte[] b = new byte[n];
        b[r.nextInt(n)] = 1;
        return b;
    }

    public static void main(String[] a) throws Exception {
        String mode = a[0];
        Random r = new Random(Long.parseLong(a[1]));
        long pid = ProcessHandle.current().pid();
        switch (mode) {
            case "bounded" -> {
                int live = Integer.parseInt(a[2]), alloc = Integer.parseInt(a[3]);
                System.out.printf("pid %d: JVM bounded live set %d MiB, %d MiB/s of garbage%n", pid, live, alloc);
                byte[][] ring = new byte[live * 16][];
                int i = 0;
                while (true) {
                    for (int k = 0; k < alloc * 16 / 10; k++) {
                        ring[i] = garbage(r, 64 * 1024);
                        i = (i + 1) % ring.length;
                        sink += garbage(r, 1024 + r.nextInt(60 * 1024)).length;
                    }
                    Thread.sleep(100);
                }
            }
            case "warmup" -> {
                int live = Integer.parseInt(a[2]);
                double warm = Double.parseDouble(a[3]);
                System.out.printf("pid %d: JVM warm-up: working set of %d MiB built over %.0f s, then held%n", pid, live,
                        warm);
                ArrayList<byte[]> set = new ArrayList<>();
                long t0 = System.nanoTime();
                while (true) {
                    double el = (System.nanoTime() - t0) / 1e9;
                    long want = (long) (Math.min(1.0, el / warm) * live * 16);
                    while (set.size() < want) set.add(garbage(r, 64 * 1024));
                    if (!set.isEmpty()) set.set(r.nextInt(set.size()), garbage(r, 64 * 1024));
                    for (int k = 0; k < 200; k++) sink += garbage(r, 2048 + r.nextInt(16384)).length;
                    Thread.sleep(100);
                }
            }
            case "lru" -> {
                int cap = Integer.parseInt(a[2]), vb = Integer.parseInt(a[3]);
                System.out.printf("pid %d: JVM LinkedHashMap LRU cache of %d entries of ~%d B%n", pid, cap, vb);
                Map<Integer, byte[]> cache = new LinkedHashMap<>(16, 0.75f, true) {
                    protected boolean removeEldestEntry(Map.Entry<Integer, byte[]> e) {
                        return size() > cap;
                    }
                };
                int perTick = Math.max(1, cap / 400);
                while (true) {
                    for (int k = 0; k < perTick; k++) {
                        int key = r.nextInt(cap * 4);
                        if (cache.get(key) == null) cache.put(key, garbage(r, vb + r.nextInt(vb / 4 + 1)));
                    }
                    Thread.sleep(100);
                }
            }
            case "leak" -> {
                long rate = Long.parseLong(a[2]);
                System.out.printf("pid %d: JVM leak: %d B/s retained in a static list, with garbage churn%n", pid, rate);
                long t0 = System.nanoTime();
                long leaked = 0;
                while (true) {
                    double el = (System.nanoTime() - t0) / 1e9;
                    while (leaked < el * rate) {
                        int n = 1024 + r.nextInt(15 * 1024);
                        RETAINED.add(garbage(r, n));
                        leaked += n;
                    }
                    for (int k = 0; k < 100; k++) sink += garbage(r, 2048 + r.nextInt(30000)).length;
                    Thread.sleep(100);
                }
            }
            default -> {
                System.err.println("unknown mode " + mode);
                System.exit(2);
            }
        }
    }
}
