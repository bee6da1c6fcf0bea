// A JVM with a bounded cache (LRU, fixed number of entries) under heavy garbage: its heap after
// collection stays level however long it runs, so it must not be reported as a leak.
// Usage: java BoundedCache.java ENTRIES ENTRY_BYTES OPS_PER_SEC GARBAGE_KIB_PER_SEC
import java.util.LinkedHashMap;
import java.util.Map;

public class BoundedCache {
    static volatile long sink;
    // Garbage is stored here so that it escapes: the JIT cannot scalar-replace the allocation.
    static final Object[] GARBAGE = new Object[64];

    public static void main(String[] args) throws Exception {
        final int entries = Integer.parseInt(args[0]);
        int entryBytes = Integer.parseInt(args[1]);
        int opsPerSec = Integer.parseInt(args[2]);
        int garbageKib = Integer.parseInt(args[3]);
        Map<Long, byte[]> cache = new LinkedHashMap<>(entries * 2, 0.75f, true) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<Long, byte[]> e) {
                return size() > entries;
            }
        };
        System.out.println("ready " + ProcessHandle.current().pid());
        long key = 0;
        long next = System.nanoTime();
        while (true) {
            for (int i = 0; i < opsPerSec / 10; i++) {
                cache.put(key++, new byte[entryBytes]);
                byte[] hit = cache.get(key - 1 - (key % 100));
                if (hit != null) {
                    sink += hit.length;
                }
            }
            for (int i = 0; i < garbageKib / 10; i++) {
                GARBAGE[i & 63] = new byte[1024];
            }
            next += 100_000_000L;
            long wait = next - System.nanoTime();
            if (wait > 0) {
                Thread.sleep(wait / 1_000_000L, (int) (wait % 1_000_000L));
            }
        }
    }
}
