package dev.lathe.cuda;

import com.sun.source.tree.AssignmentTree;
import com.sun.source.tree.BinaryTree;
import com.sun.source.tree.CompilationUnitTree;
import com.sun.source.tree.ExpressionTree;
import com.sun.source.tree.IdentifierTree;
import com.sun.source.tree.LiteralTree;
import com.sun.source.tree.MemberSelectTree;
import com.sun.source.tree.MethodInvocationTree;
import com.sun.source.tree.MethodTree;
import com.sun.source.tree.ReturnTree;
import com.sun.source.tree.VariableTree;
import com.sun.source.util.JavacTask;
import com.sun.source.util.TreeScanner;
import org.junit.jupiter.api.Test;

import javax.tools.ToolProvider;
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
    private static final Path KERNELS = Path.of("src/main/java/dev/lathe/cuda/Kernels.java");

    /** One field: its kind (ptr, i64, i32, f32) and name. */
    record Field(String kind, String name) {}

    /**
     * Each kernel is looked up in the module (fatbin) of the .cu file that defines it, and every module looked
     * up is one the build makes ({@link KernelImages#MODULES}): a miss fails only when a GPU loads the kernels.
     */
    @Test
    void eachKernelIsLookedUpInTheModuleThatDefinesIt() throws IOException {
        Map<String, String> definedIn = new HashMap<>();  // kernel -> module
        Pattern kernel = Pattern.compile("extern \"C\" __global__ void (?:__launch_bounds__\\([^)]*\\) )?(\\w+)\\(");
        Pattern macroKernel = Pattern.compile("void (?:__launch_bounds__\\([^)]*\\) )?(\\w+)##\\w+\\(");
        try (Stream<Path> files = Files.list(CUDA)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".cu")).toList()) {
                String module = f.getFileName().toString().replace(".cu", "");
                String src = Files.readString(f);
                Matcher k = kernel.matcher(src);
                while (k.find()) definedIn.put(k.group(1), module);
                Matcher m = macroKernel.matcher(src);
                while (m.find()) definedIn.put(m.group(1) + "*", module);
            }
        }
        CompilationUnitTree unit = parseKernels();
        Map<String, String> moduleOfLocal = new HashMap<>();  // CudaModule x = byName.get("m")
        new TreeScanner<Void, Void>() {
            @Override
            public Void visitVariable(VariableTree v, Void unused) {
                if (v.getInitializer() instanceof MethodInvocationTree get && called(get).equals("get")
                        && get.getArguments().getFirst() instanceof LiteralTree l) {
                    moduleOfLocal.put(v.getName().toString(), String.valueOf(l.getValue()));
                }
                return super.visitVariable(v, unused);
            }
        }.scan(unit, null);
        List<String> problems = new ArrayList<>();
        int[] lookups = {0};
        new TreeScanner<Void, Void>() {
            @Override
            public Void visitMethodInvocation(MethodInvocationTree call, Void v) {
                if (called(call).equals("kernel") && call.getArguments().size() == 2
                        && call.getMethodSelect() instanceof MemberSelectTree sel) {
                    String module = switch (sel.getExpression()) {
                        case MethodInvocationTree get when called(get).equals("get")
                                && get.getArguments().getFirst() instanceof LiteralTree l -> String.valueOf(l.getValue());
                        case IdentifierTree id -> moduleOfLocal.get(id.getName().toString());
                        default -> null;
                    };
                    String name = kernelName(call.getArguments().getFirst());
                    lookups[0]++;
                    if (module == null || name == null) {
                        problems.add("cannot tell the module or kernel of " + call);
                    } else if (!KernelImages.MODULES.contains(module)) {
                        problems.add(name + ": module '" + module + "' is not in KernelImages.MODULES");
                    } else if (!module.equals(definedIn.get(name))) {
                        problems.add(name + ": looked up in '" + module + "' but defined in '" + definedIn.get(name) + "'");
                    }
                }
                return super.visitMethodInvocation(call, v);
            }
        }.scan(unit, null);
        assertThat(problems).isEmpty();
        assertThat(lookups[0]).as("kernel lookups checked").isGreaterThan(15);
    }

    @Test
    void javaStructsMatchTheCudaStructs() throws IOException {
        Map<String, List<Field>> c = cudaKernels();
        Map<String, List<Field>> java = javaKernels();
        assertThat(java).as("kernels declared in Kernels.java").hasSizeGreaterThan(15);
        List<String> problems = new ArrayList<>();
        for (var e : java.entrySet()) {
            String name = e.getKey();
            List<String> matches = new ArrayList<>();
            if (name.endsWith("*")) {
                String prefix = name.substring(0, name.length() - 1);
                for (String k : c.keySet()) if (k.startsWith(prefix)) matches.add(k);
            } else if (c.containsKey(name)) {
                matches.add(name);
            }
            if (matches.isEmpty()) problems.add(name + ": no such extern \"C\" kernel in " + CUDA);
            for (String k : matches) {
                if (!c.get(k).equals(e.getValue())) {
                    problems.add(k + ": Kernels.java has " + e.getValue() + " but the CUDA struct is " + c.get(k));
                }
            }
        }
        assertThat(problems).as("parameter structs that differ between Java and CUDA").isEmpty();
    }

    /** Kernel name to the fields of the struct it takes, from the .cu sources. */
    private static Map<String, List<Field>> cudaKernels() throws IOException {
        Map<String, List<Field>> structs = new HashMap<>();
        Map<String, String> kernelStruct = new HashMap<>();
        Pattern struct = Pattern.compile("struct\\s+(\\w+)\\s*\\{([^}]*)\\};");
        Pattern field = Pattern.compile("^\\s*(?:const\\s+)?([\\w ]+?)\\s*(\\*?)\\s*(\\w+)\\s*;", Pattern.MULTILINE);
        Pattern kernel = Pattern.compile("extern \"C\" __global__ void (?:__launch_bounds__\\([^)]*\\) )?(\\w+)\\(const (\\w+) p\\)");
        Pattern macro = Pattern.compile("#define (\\w+)\\((\\w+)\\)[^\\n]*\\n[^\\n]*void (?:__launch_bounds__\\([^)]*\\) )?(\\w+)##\\2\\(const (\\w+) p\\)");
        try (Stream<Path> files = Files.list(CUDA)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".cu") || p.toString().endsWith(".cuh")).toList()) {
                String src = Files.readString(f).replaceAll("//[^\\n]*", "");
                Matcher s = struct.matcher(src);
                while (s.find()) {
                    List<Field> fields = new ArrayList<>();
                    Matcher m = field.matcher(s.group(2));
                    while (m.find()) fields.add(new Field(kind(m.group(1).trim(), !m.group(2).isEmpty()), m.group(3)));
                    structs.put(s.group(1), fields);
                }
                Matcher k = kernel.matcher(src);
                while (k.find()) kernelStruct.put(k.group(1), k.group(2));
                Matcher d = macro.matcher(src);
                while (d.find()) {
                    Matcher uses = Pattern.compile("^" + d.group(1) + "\\((\\w+)\\)", Pattern.MULTILINE).matcher(src);
                    while (uses.find()) kernelStruct.put(d.group(3) + uses.group(1), d.group(4));
                }
            }
        }
        Map<String, List<Field>> out = new HashMap<>();
        kernelStruct.forEach((k, s) -> out.put(k, structs.getOrDefault(s, List.of())));
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

    /** Kernel name (a trailing * for names built as prefix + number) to its fields, from Kernels.java. */
    private static CompilationUnitTree parseKernels() throws IOException {
        var javac = ToolProvider.getSystemJavaCompiler();
        try (var fm = javac.getStandardFileManager(null, null, null)) {
            return ((JavacTask) javac.getTask(null, fm, null, List.of("-proc:none"), null, fm.getJavaFileObjects(KERNELS)))
                    .parse().iterator().next();
        }
    }

    private static Map<String, List<Field>> javaKernels() throws IOException {
        CompilationUnitTree unit = parseKernels();
        Map<String, List<Field>> helpers = new HashMap<>();
        new TreeScanner<Void, Void>() {
            @Override
            public Void visitMethod(MethodTree m, Void v) {
                new TreeScanner<Void, Void>() {
                    @Override
                    public Void visitReturn(ReturnTree r, Void v2) {
                        if (r.getExpression() instanceof MethodInvocationTree s && called(s).equals("struct")) {
                            helpers.put(m.getName().toString(), fields(s));
                        }
                        return null;
                    }
                }.scan(m.getBody(), null);
                return super.visitMethod(m, v);
            }
        }.scan(unit, null);
        Map<String, List<Field>> out = new HashMap<>();
        new TreeScanner<Void, Void>() {
            @Override
            public Void visitAssignment(AssignmentTree a, Void v) {
                if (a.getExpression() instanceof MethodInvocationTree k && called(k).equals("kernel") && k.getArguments().size() == 2
                        && k.getArguments().get(1) instanceof MethodInvocationTree params) {
                    String name = kernelName(k.getArguments().get(0));
                    List<Field> f = called(params).equals("struct") ? fields(params) : helpers.get(called(params));
                    if (name != null && f != null) out.put(name, f);
                }
                return super.visitAssignment(a, v);
            }
        }.scan(unit, null);
        return out;
    }

    private static String kernelName(ExpressionTree e) {
        if (e instanceof LiteralTree l && l.getValue() instanceof String s) return s;
        if (e instanceof BinaryTree b && b.getLeftOperand() instanceof LiteralTree l && l.getValue() instanceof String s) {
            return s + "*";
        }
        return null;
    }

    /** The fields of a struct(name, ptr("a"), i32("b"), ...) call. */
    private static List<Field> fields(MethodInvocationTree struct) {
        List<Field> out = new ArrayList<>();
        for (ExpressionTree arg : struct.getArguments().subList(1, struct.getArguments().size())) {
            if (arg instanceof MethodInvocationTree f && f.getArguments().size() == 1
                    && f.getArguments().getFirst() instanceof LiteralTree l) {
                out.add(new Field(called(f), String.valueOf(l.getValue())));
            } else {
                out.add(new Field("?", arg.toString()));
            }
        }
        return out;
    }

    private static String called(MethodInvocationTree call) {
        String s = call.getMethodSelect().toString();
        return s.substring(s.lastIndexOf('.') + 1);
    }
}
