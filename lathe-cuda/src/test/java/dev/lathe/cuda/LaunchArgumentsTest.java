package dev.lathe.cuda;

import com.sun.source.tree.ArrayAccessTree;
import com.sun.source.tree.CompilationUnitTree;
import com.sun.source.tree.ExpressionTree;
import com.sun.source.tree.IdentifierTree;
import com.sun.source.tree.MemberSelectTree;
import com.sun.source.tree.MethodInvocationTree;
import com.sun.source.tree.MethodTree;
import com.sun.source.tree.Tree;
import com.sun.source.tree.VariableTree;
import com.sun.source.util.JavacTask;
import com.sun.source.util.Trees;
import com.sun.source.util.TreePath;
import com.sun.source.util.TreePathScanner;
import com.sun.source.util.TreeScanner;
import org.junit.jupiter.api.Test;

import javax.lang.model.type.TypeKind;
import javax.lang.model.type.TypeMirror;
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;
import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Every kernel launch in {@link CudaBackend} passes as many arguments as its kernel's parameter struct in
 * {@link Kernels} has fields, each of the Java type the field takes (long for pointers and 64-bit fields,
 * int, float), checked on the source without a GPU. A launch that gets this wrong fails only
 * when it runs, on a GPU, as one did (the block size passed as an argument); this finds it in CI.
 *
 * <p>{@code launch(stream, gridX, gridY, block, args...)} and {@code launch3(stream, gridX, gridY, gridZ,
 * block, args...)}; the kernel is {@code kernels.F} or {@code kernels.F[i]}, or a local variable or
 * parameter whose value comes from such fields (directly, through a conditional, or through a method of
 * CudaBackend that returns them): then every field it may hold must fit.
 */
class LaunchArgumentsTest {
    
    @Test
    void everyLaunchPassesOneArgumentPerStructFieldOfItsType() throws IOException {
        Map<String, List<String>> fields = structFields();
        assertThat(fields).as("kernels found in Kernels.java").hasSizeGreaterThan(15);

        // the whole package, attributed against the test class path, so each argument's type is known
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        List<String> problems = new ArrayList<>();
        int[] checked = {0};
        try (var fm = javac.getStandardFileManager(null, null, null); var files = Files.list(KernelDeclarations.SOURCES)) {
            var sources = fm.getJavaFileObjectsFromPaths(files.filter(p -> p.toString().endsWith(".java")).toList());
            var task = (JavacTask) javac.getTask(null, fm, null,
                    List.of("-proc:none", "-classpath", System.getProperty("java.class.path")), null, sources);
            CompilationUnitTree backend = null;
            for (CompilationUnitTree u : task.parse()) {
                if (u.getSourceFile().getName().endsWith("CudaBackend.java")) backend = u;
            }
            task.analyze();
            Trees trees = Trees.instance(task);
            assertThat(backend).as("CudaBackend.java parsed").isNotNull();
            CompilationUnitTree unit = backend;

            Map<String, MethodTree> methods = new HashMap<>();
            new TreeScanner<Void, Void>() {
                @Override
                public Void visitMethod(MethodTree m, Void v) {
                    methods.put(m.getName().toString(), m);
                    return super.visitMethod(m, v);
                }
            }.scan(unit, null);

            new TreePathScanner<Void, Void>() {
                @Override
                public Void visitMethodInvocation(MethodInvocationTree call, Void v) {
                    if (call.getMethodSelect() instanceof MemberSelectTree sel) {
                        String name = sel.getIdentifier().toString();
                        int skip = name.equals("launch") ? 4 : name.equals("launch3") ? 5 : -1;
                        if (skip > 0) {
                            List<? extends ExpressionTree> args = call.getArguments().subList(skip, call.getArguments().size());
                            Set<String> kernels = kernelsOf(sel.getExpression(), enclosingMethod(getCurrentPath()), methods,
                                    unit, new LinkedHashSet<>());
                            if (kernels.isEmpty()) problems.add("cannot tell which kernel " + call + " launches");
                            for (String k : kernels) {
                                checked[0]++;
                                List<String> want = fields.get(k);
                                if (want == null) {
                                    problems.add(k + " is launched but not defined in Kernels.java");
                                } else if (want.size() != args.size()) {
                                    problems.add(k + ": " + args.size() + " arguments for " + want.size() + " fields in " + call);
                                } else {
                                    for (int i = 0; i < args.size(); i++) {
                                        TypeMirror t = trees.getTypeMirror(new TreePath(getCurrentPath(), args.get(i)));
                                        TypeKind got = t == null ? TypeKind.ERROR : unboxed(t);
                                        if (got != javaKind(want.get(i))) {
                                            problems.add(k + ": argument " + (i + 1) + " (" + args.get(i) + ") is " + t
                                                    + " for a " + want.get(i) + " field in " + call);
                                        }
                                    }
                                }
                            }
                        }
                    }
                    return super.visitMethodInvocation(call, v);
                }
            }.scan(unit, null);
        }
        assertThat(problems).as("launches that do not fit their kernel's struct").isEmpty();
        assertThat(checked[0]).as("launch sites checked").isGreaterThan(20);
    }

    private static TypeKind unboxed(TypeMirror t) {
        return switch (t.toString()) {
            case "java.lang.Long" -> TypeKind.LONG;
            case "java.lang.Integer" -> TypeKind.INT;
            case "java.lang.Float" -> TypeKind.FLOAT;
            default -> t.getKind();
        };
    }

    /** Java field of Kernels (arrays by name) to the kinds (ptr, i64, i32, f32) of its struct's fields. */
    private static Map<String, List<String>> structFields() throws IOException {
        Map<String, List<String>> out = new HashMap<>();
        for (var d : KernelDeclarations.read()) {
            if (d.javaField() != null && d.fields() != null) {
                out.put(d.javaField(), d.fields().stream().map(KernelDeclarations.Field::kind).toList());
            }
        }
        return out;
    }

    /** The Java type a struct field of this kind takes (KernelParams.write wants Long, Integer or Float). */
    private static TypeKind javaKind(String fieldKind) {
        return switch (fieldKind) {
            case "ptr", "i64" -> TypeKind.LONG;
            case "i32" -> TypeKind.INT;
            case "f32" -> TypeKind.FLOAT;
            default -> TypeKind.ERROR;
        };
    }

    /** The Kernels fields an expression may evaluate to. */
    private static Set<String> kernelsOf(ExpressionTree e, MethodTree in, Map<String, MethodTree> methods,
                                         CompilationUnitTree unit, Set<String> seen) {
        Set<String> out = new LinkedHashSet<>();
        if (e instanceof ArrayAccessTree arr) return kernelsOf(arr.getExpression(), in, methods, unit, seen);
        if (e instanceof MemberSelectTree sel && sel.getExpression() instanceof IdentifierTree id
                && id.getName().contentEquals("kernels")) {
            out.add(sel.getIdentifier().toString());
            return out;
        }
        if (e instanceof IdentifierTree id && in != null) {
            String name = id.getName().toString();
            if (!seen.add(in.getName() + "." + name)) return out;
            // a local variable: the kernels its initializer mentions, directly or through a method it calls
            for (VariableTree local : locals(in)) {
                if (local.getName().contentEquals(name) && local.getInitializer() != null) {
                    out.addAll(mentioned(local.getInitializer(), methods));
                    return out;
                }
            }
            // a parameter: what each call of this method passes in its place
            for (int p = 0; p < in.getParameters().size(); p++) {
                if (!in.getParameters().get(p).getName().contentEquals(name)) continue;
                int index = p;
                new TreePathScanner<Void, Void>() {
                    @Override
                    public Void visitMethodInvocation(MethodInvocationTree call, Void v) {
                        if (call.getMethodSelect() instanceof IdentifierTree callee
                                && callee.getName().contentEquals(in.getName()) && call.getArguments().size() > index) {
                            out.addAll(kernelsOf(call.getArguments().get(index), enclosingMethod(getCurrentPath()), methods,
                                    unit, seen));
                        }
                        return super.visitMethodInvocation(call, v);
                    }
                }.scan(unit, null);
            }
        }
        return out;
    }

    private static Set<String> mentioned(Tree t, Map<String, MethodTree> methods) {
        Set<String> out = new LinkedHashSet<>();
        new TreeScanner<Void, Void>() {
            @Override
            public Void visitMemberSelect(MemberSelectTree sel, Void v) {
                if (sel.getExpression() instanceof IdentifierTree id && id.getName().contentEquals("kernels")) {
                    out.add(sel.getIdentifier().toString());
                }
                return super.visitMemberSelect(sel, v);
            }

            @Override
            public Void visitMethodInvocation(MethodInvocationTree call, Void v) {
                if (call.getMethodSelect() instanceof IdentifierTree callee) {
                    MethodTree m = methods.get(callee.getName().toString());
                    if (m != null && m.getBody() != null) out.addAll(mentioned(m.getBody(), Map.of()));
                }
                return super.visitMethodInvocation(call, v);
            }
        }.scan(t, null);
        return out;
    }

    private static List<VariableTree> locals(MethodTree m) {
        List<VariableTree> out = new ArrayList<>();
        if (m.getBody() == null) return out;
        new TreeScanner<Void, Void>() {
            @Override
            public Void visitVariable(VariableTree v, Void unused) {
                out.add(v);
                return super.visitVariable(v, unused);
            }
        }.scan(m.getBody(), null);
        return out;
    }

    private static MethodTree enclosingMethod(TreePath path) {
        for (TreePath p = path; p != null; p = p.getParentPath()) {
            if (p.getLeaf() instanceof MethodTree m) return m;
        }
        return null;
    }
}
