// A JVM whose heap leaks: LeakedOrderDto instances (64 bytes each) retained in a static list (like "thousands of
// OrderDTO instances" in a cache nobody evicts), plus short-lived garbage so the collector runs.
// Usage: java HeapLeak.java RETAINED_PER_SEC GARBAGE_KIB_PER_SEC
// Once the heap is full the JVM throws OutOfMemoryError and exits (status 1).
import java.util.ArrayList;
import java.util.List;

final class LeakedOrderDto {
    final long id;
    final long customerId;
    final long amountCents;
    final long createdAtMillis;
    final long updatedAtMillis;
    final long warehouseId;
    final int status;
    final int items;

    LeakedOrderDto(long id) {
        this.id = id;
        this.customerId = id % 1000;
        this.amountCents = id * 7 % 100_000;
        this.createdAtMillis = System.currentTimeMillis();
        this.updatedAtMillis = this.createdAtMillis;
        this.warehouseId = id % 13;
        this.status = (int) (id % 5);
        this.items = (int) (id % 9) + 1;
    }
}

public class HeapLeak {
    static final List<LeakedOrderDto> RETAINED = new ArrayList<>();
    // Garbage is stored here so that it escapes: the JIT cannot scalar-replace the allocation.
    static final Object[] GARBAGE = new Object[64];

    public static void main(String[] args) throws Exception {
        int perSec = Integer.parseInt(args[0]);
        int garbageKib = Integer.parseInt(args[1]);
        System.out.println("ready " + ProcessHandle.current().pid());
        long id = 0;
        long next = System.nanoTime();
        while (true) {
            for (int i = 0; i < perSec / 10; i++) {
                RETAINED.add(new LeakedOrderDto(id++));
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
