package dev.lathe.cpu;

import dev.lathe.core.backend.Backend;
import dev.lathe.core.backend.ForwardingBackend;
import dev.lathe.core.backend.Tensor;
import dev.lathe.core.checkpoint.DType;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Set;

/**
 * A backend that offers a 16-bit format somewhere (the subclass says where) over the CPU backend, which has no 16-bit
 * tensors: a BF16 allocation gets a float32 tensor instead, remembered in {@link #sixteen} so the test can see where
 * the model passes it. The numbers stay those of float32.
 */
class SixteenBitStandIn extends ForwardingBackend {
    final Set<Tensor> sixteen = Collections.newSetFromMap(new IdentityHashMap<>());
    int allocations;

    SixteenBitStandIn(Backend inner) { super(inner); }

    @Override
    public Tensor allocate(DType dtype, int rows, int cols) {
        if (dtype != DType.BF16) return super.allocate(dtype, rows, cols);
        allocations++;
        Tensor t = super.allocate(DType.F32, rows, cols);
        sixteen.add(t);
        return t;
    }
}
