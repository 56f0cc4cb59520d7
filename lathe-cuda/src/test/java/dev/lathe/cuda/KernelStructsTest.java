package dev.lathe.cuda;

import dev.lathe.cuda.KernelDeclarations.Declaration;
import dev.lathe.cuda.KernelDeclarations.Field;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Every parameter struct declared in {@link Kernels} mirrors its kernel's C struct in {@code src/main/cuda}:
 * the same fields, in the same order, of matching kinds (pointer, 64-bit, 32-bit int, float). A mismatch
 * would pass the wrong bytes to a kernel and show only as wrong numbers on a GPU; this finds it in CI.
 */
class KernelStructsTest {
    private static final Path CUDA = Path.of("src/main/cuda");

    /** An extern "C" kernel of the CUDA sources: the module (.cu file) defining it and its struct's fields. */
    record CudaKernel(String module, List<Field> fields) {}

    /**
     * Each kernel is looked up in the module (fatbin) of the .cu file that defines it, and every module looked
     * up is one the build makes ({@link KernelImages#MODULES}): a miss fails only when a GPU loads the kernels.
     */
    @Test
    void eachKernelIsLookedUpInTheModuleThatDefinesIt() throws IOException {
        Map<String, CudaKernel> c = cudaKernels();
        List<Declaration> java = KernelDeclarations.read();
        List<String> problems = new ArrayList<>();
        for (Declaration d : java) {
            List<String> defined = matching(d.cudaName(), c);
            String definedIn = defined.isEmpty() ? null : c.get(defined.getFirst()).module();
            if (d.module() == null || d.cudaName() == null) {
                problems.add("cannot tell the module or kernel of " + d.source());
            } else if (!KernelImages.MODULES.contains(d.module())) {
                problems.add(d.cudaName() + ": module '" + d.module() + "' is not in KernelImages.MODULES");
            } else if (!d.module().equals(definedIn)) {
                problems.add(d.cudaName() + ": looked up in '" + d.module() + "' but defined in '" + definedIn + "'");
            }
        }
        assertThat(problems).isEmpty();
        assertThat(java).as("kernel lookups checked").hasSizeGreaterThan(15);
    }

    @Test
    void javaStructsMatchTheCudaStructs() throws IOException {
        Map<String, CudaKernel> c = cudaKernels();
        List<Declaration> java = KernelDeclarations.read();
        assertThat(java).as("kernels declared in Kernels.java").hasSizeGreaterThan(15);
        List<String> problems = new ArrayList<>();
        for (Declaration d : java) {
            List<String> matches = matching(d.cudaName(), c);
            if (matches.isEmpty()) problems.add(d.cudaName() + ": no such extern \"C\" kernel in " + CUDA);
            for (String k : matches) {
                if (!c.get(k).fields().equals(d.fields())) {
                    problems.add(k + ": Kernels.java has " + d.fields() + " but the CUDA struct is " + c.get(k).fields());
                }
            }
        }
        assertThat(problems).as("parameter structs that differ between Java and CUDA").isEmpty();
    }

    /**
     * Every kernel's first statement is LATHE_PDL_WAIT() (common.cuh): launched with programmatic stream
     * serialization (-Dlathe.pdl=true), a kernel that touched memory before it could read what its predecessor
     * has not written yet, or overwrite what it still reads.
     */
    @Test
    void everyKernelWaitsForItsPredecessorFirst() throws IOException {
        Pattern entry = Pattern.compile("extern \"C\" __global__ void (?:__launch_bounds__\\([^)]*\\) )?([\\w#]+)\\([^)]*\\)\\s*\\{\\s*(\\S*)");
        List<String> problems = new ArrayList<>();
        int kernels = 0;
        try (Stream<Path> files = Files.list(CUDA)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".cu")).toList()) {
                Matcher m = entry.matcher(Files.readString(f));
                while (m.find()) {
                    kernels++;
                    if (!m.group(2).equals("LATHE_PDL_WAIT();")) problems.add(f.getFileName() + ": " + m.group(1) + " begins with " + m.group(2));
                }
            }
        }
        // a macro-made family (split_attention_##DPL, FLASH_ENTRY) counts once here, as its one definition
        assertThat(kernels).as("kernel definitions found, the macro-made ones among them").isGreaterThan(25);
        assertThat(problems).as("kernels that touch memory before LATHE_PDL_WAIT()").isEmpty();
    }

    /** The CUDA kernels a declared name stands for: itself, or every kernel with its prefix for "prefix*". */
    private static List<String> matching(String name, Map<String, CudaKernel> c) {
        List<String> out = new ArrayList<>();
        if (name == null) return out;
        if (name.endsWith("*")) {
            String prefix = name.substring(0, name.length() - 1);
            for (String k : c.keySet()) if (k.startsWith(prefix)) out.add(k);
        } else if (c.containsKey(name)) {
            out.add(name);
        }
        return out;
    }

    /** Every extern "C" kernel of the .cu sources (macro-made ones too) with its module and struct. */
    private static Map<String, CudaKernel> cudaKernels() throws IOException {
        Map<String, List<Field>> structs = new HashMap<>();
        Map<String, String[]> kernelStruct = new HashMap<>();  // kernel -> {module, struct}
        Pattern struct = Pattern.compile("struct\\s+(\\w+)\\s*\\{([^}]*)\\};");
        Pattern field = Pattern.compile("^\\s*(?:const\\s+)?([\\w ]+?)\\s*(\\*?)\\s*(\\w+)\\s*;", Pattern.MULTILINE);
        Pattern kernel = Pattern.compile("extern \"C\" __global__ void (?:__launch_bounds__\\([^)]*\\) )?(\\w+)\\(const (\\w+) p\\)");
        Pattern macro = Pattern.compile("#define (\\w+)\\((\\w+)\\)[^\\n]*\\n[^\\n]*void (?:__launch_bounds__\\([^)]*\\) )?(\\w+)##\\2\\(const (\\w+) p\\)");
        // a macro whose first parameter is the whole kernel name: NAME(name, ...)
        Pattern named = Pattern.compile("#define (\\w+)\\((\\w+),[^)]*\\)[^\\n]*\\n[^\\n]*void (?:__launch_bounds__\\([^)]*\\) )?\\2\\(const (\\w+) p\\)");
        try (Stream<Path> files = Files.list(CUDA)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".cu") || p.toString().endsWith(".cuh")).toList()) {
                String module = f.getFileName().toString().replaceAll("\\.cuh?$", "");
                String src = Files.readString(f).replaceAll("//[^\\n]*", "");
                Matcher s = struct.matcher(src);
                while (s.find()) {
                    List<Field> fields = new ArrayList<>();
                    Matcher m = field.matcher(s.group(2));
                    while (m.find()) fields.add(new Field(kind(m.group(1).trim(), !m.group(2).isEmpty()), m.group(3)));
                    structs.put(s.group(1), fields);
                }
                Matcher k = kernel.matcher(src);
                while (k.find()) kernelStruct.put(k.group(1), new String[]{module, k.group(2)});
                Matcher d = macro.matcher(src);
                while (d.find()) {
                    Matcher uses = Pattern.compile("^" + d.group(1) + "\\((\\w+)\\)", Pattern.MULTILINE).matcher(src);
                    while (uses.find()) kernelStruct.put(d.group(3) + uses.group(1), new String[]{module, d.group(4)});
                }
                Matcher n = named.matcher(src);
                while (n.find()) {
                    Matcher uses = Pattern.compile("^" + n.group(1) + "\\((\\w+),", Pattern.MULTILINE).matcher(src);
                    while (uses.find()) kernelStruct.put(uses.group(1), new String[]{module, n.group(3)});
                }
            }
        }
        Map<String, CudaKernel> out = new HashMap<>();
        kernelStruct.forEach((k, ms) -> out.put(k, new CudaKernel(ms[0], structs.getOrDefault(ms[1], List.of()))));
        return out;
    }

    private static String kind(String type, boolean pointer) {
        if (pointer) return "ptr";
        return switch (type) {
            case "long long", "unsigned long long" -> "i64";
            case "int", "unsigned int" -> "i32";
            case "float" -> "f32";
            default -> "?" + type;
        };
    }
}
