package dev.lathe.cuda;

import com.sun.source.tree.ArrayAccessTree;
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

import javax.tools.ToolProvider;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The kernel lookups of {@code Kernels.java}, read from its source for the tests that check them against
 * the CUDA sources and the launch sites without a GPU: {@code field = module.kernel("name", struct("name",
 * ptr("a"), i32("b"), ...))}, with the struct written out or returned by a helper method, and the module
 * either {@code byName.get("m")} or a local variable holding one.
 */
final class KernelDeclarations {
    static final Path SOURCES = Path.of("src/main/java/dev/lathe/cuda");

    /** One struct field: its kind (ptr, i64, i32, f32) and name. */
    record Field(String kind, String name) {}

    /**
     * @param javaField the field of Kernels it is stored in (by name for array fields)
     * @param cudaName  the kernel's name, ending in * where it is built as a prefix plus a number
     * @param module    the module it is looked up in, or null when the source does not say
     * @param fields    its parameter struct
     */
    record Declaration(String javaField, String cudaName, String module, List<Field> fields, String source) {}

    private KernelDeclarations() {}

    static CompilationUnitTree parse(String file) throws IOException {
        var javac = ToolProvider.getSystemJavaCompiler();
        try (var fm = javac.getStandardFileManager(null, null, null)) {
            return ((JavacTask) javac.getTask(null, fm, null, List.of("-proc:none"), null,
                    fm.getJavaFileObjects(SOURCES.resolve(file)))).parse().iterator().next();
        }
    }

    static List<Declaration> read() throws IOException {
        CompilationUnitTree unit = parse("Kernels.java");
        Map<String, List<Field>> helpers = new HashMap<>();  // methods like gemvParams(name) returning struct(name, ...)
        Map<String, String> moduleOfLocal = new HashMap<>();  // CudaModule x = byName.get("m")
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

            @Override
            public Void visitVariable(VariableTree v, Void unused) {
                if (v.getInitializer() instanceof MethodInvocationTree get && called(get).equals("get")
                        && get.getArguments().getFirst() instanceof LiteralTree l) {
                    moduleOfLocal.put(v.getName().toString(), String.valueOf(l.getValue()));
                }
                return super.visitVariable(v, unused);
            }
        }.scan(unit, null);

        List<Declaration> out = new ArrayList<>();
        new TreeScanner<Void, Void>() {
            @Override
            public Void visitAssignment(AssignmentTree a, Void v) {
                if (a.getExpression() instanceof MethodInvocationTree k && called(k).equals("kernel")
                        && k.getArguments().size() == 2 && k.getArguments().get(1) instanceof MethodInvocationTree params
                        && k.getMethodSelect() instanceof MemberSelectTree sel) {
                    String field = switch (a.getVariable()) {
                        case IdentifierTree id -> id.getName().toString();
                        case ArrayAccessTree arr when arr.getExpression() instanceof IdentifierTree id -> id.getName().toString();
                        default -> null;
                    };
                    String module = switch (sel.getExpression()) {
                        case MethodInvocationTree get when called(get).equals("get")
                                && get.getArguments().getFirst() instanceof LiteralTree l -> String.valueOf(l.getValue());
                        case IdentifierTree id -> moduleOfLocal.get(id.getName().toString());
                        default -> null;
                    };
                    List<Field> f = called(params).equals("struct") ? fields(params) : helpers.get(called(params));
                    out.add(new Declaration(field, kernelName(k.getArguments().getFirst()), module, f, a.toString()));
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

    static String called(MethodInvocationTree call) {
        String s = call.getMethodSelect().toString();
        return s.substring(s.lastIndexOf('.') + 1);
    }
}
