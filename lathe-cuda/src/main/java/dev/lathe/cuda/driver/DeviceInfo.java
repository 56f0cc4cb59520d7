package dev.lathe.cuda.driver;

/** What the driver reports about one GPU. */
public record DeviceInfo(int ordinal, String name, int computeMajor, int computeMinor, int multiprocessors,
                         int l2CacheBytes, long totalMemoryBytes) {
    public String computeCapability() { return computeMajor + "." + computeMinor; }
}
