package dev.lathe.core.checkpoint;

import java.util.Set;

/** Named weights, looked up by their Hugging Face names. */
public interface WeightSource extends AutoCloseable {
    boolean has(String name);

    /** The tensor, or an error that names it and says where it was looked for. */
    WeightTensor get(String name);

    Set<String> names();

    @Override
    void close();
}
