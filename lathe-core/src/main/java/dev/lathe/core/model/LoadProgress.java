package dev.lathe.core.model;

/** Told after each weight is resident; {@code bytesDone} of {@code bytesTotal}. */
@FunctionalInterface
public interface LoadProgress {
    void onWeight(String name, long bytesDone, long bytesTotal);

    LoadProgress NONE = (name, done, total) -> { };
}
