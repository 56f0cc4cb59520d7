package dev.lathe.cuda;

import dev.lathe.cuda.driver.CudaContext;
import dev.lathe.cuda.driver.DeviceBuffer;

import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;

/**
 * Reuses activation buffers instead of freeing them: cuMemFree waits for the device, so freeing a step's
 * tensors stalled the host until the GPU had finished the step, and cuMemAlloc is slow besides.
 *
 * <p>Safe because every use of the memory is ordered on the backend's one stream: a buffer handed back
 * while kernels that read it are still queued is only written again by work queued after them. Sizes
 * are rounded up to 512 bytes below 1 MiB and to 1 MiB above, so the repeating shapes of decode and
 * prefill steps find their buffers again. Buffers stay pooled until {@link #release()} (backend close) or
 * an allocation fails, when the pool is emptied and the allocation retried.
 */
final class BufferPool {
    private final CudaContext context;
    private final boolean keepOnFailure;
    private final Map<Long, ArrayDeque<DeviceBuffer>> free = new HashMap<>();
    private long pooledBytes;

    BufferPool(CudaContext context) {
        this(context, false);
    }

    /**
     * @param keepOnFailure never free pooled buffers when an allocation fails (a pool whose buffers recorded
     *                      graphs still point at); the failure is reported instead
     */
    BufferPool(CudaContext context, boolean keepOnFailure) {
        this.context = context;
        this.keepOnFailure = keepOnFailure;
    }

    static long roundUp(long bytes) {
        long unit = bytes <= (1L << 20) ? 512 : 1L << 20;
        return (bytes + unit - 1) / unit * unit;
    }

    synchronized DeviceBuffer obtain(long bytes) {
        if (bytes == 0) return context.allocate(0);
        long size = roundUp(bytes);
        ArrayDeque<DeviceBuffer> q = free.get(size);
        if (q != null && !q.isEmpty()) {
            pooledBytes -= size;
            return q.pop();
        }
        try {
            return context.allocate(size);
        } catch (RuntimeException e) {
            if (pooledBytes == 0 || keepOnFailure) throw e;
            release(); // out of memory with buffers parked here: give them back and try once more
            return context.allocate(size);
        }
    }

    synchronized void recycle(DeviceBuffer buffer) {
        if (buffer.bytes() == 0 || buffer.isClosed()) return;
        free.computeIfAbsent(buffer.bytes(), k -> new ArrayDeque<>()).push(buffer);
        pooledBytes += buffer.bytes();
    }

    /** Frees every pooled buffer (waits for the device, as cuMemFree does). */
    synchronized void release() {
        for (ArrayDeque<DeviceBuffer> q : free.values()) {
            for (DeviceBuffer b : q) b.close();
        }
        free.clear();
        pooledBytes = 0;
    }
}
