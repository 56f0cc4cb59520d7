package dev.lathe.core.tokenizer;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.el.JinjavaInterpreterResolver;
import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.filter.Filter;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import jinjava.javax.el.CompositeELResolver;

import java.time.Clock;
import java.time.ZonedDateTime;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A model's Jinja chat template, rendered the way HF transformers' {@code apply_chat_template}
 * does: Jinja with {@code trim_blocks} and {@code lstrip_blocks}, loop controls, and the helpers
 * real templates call ({@code raise_exception}, {@code strftime_now}, {@code tojson}, Python
 * string methods, {@code namespace()}).
 *
 * <p>The context holds {@code messages} (maps with role and content), {@code add_generation_prompt},
 * {@code bos_token}, {@code eos_token} and {@code tools = none}, plus any extra variables given to
 * {@link #render(List, boolean, Map)} (e.g. {@code date_string}).
 *
 * <p>Thread safe: each render gets its own interpreter state.
 */
public final class ChatTemplate {

    private final String source;
    private final String compiled;   // source with Jinja2's whitespace rules applied for Jinjava
    private final String bosToken;
    private final String eosToken;
    private final Jinjava jinjava;

    /** Per render: what raise_exception was asked to say; Jinjava records errors, not throws. */
    private static final ThreadLocal<String> RAISED = new ThreadLocal<>();
    private static final ThreadLocal<Clock> CLOCK = ThreadLocal.withInitial(Clock::systemDefaultZone);

    public ChatTemplate(String source, String bosToken, String eosToken) {
        // Jinja2 (keep_trailing_newline=False, as HF leaves it) drops one newline at the end.
        this.source = source;
        String trimmed = source.endsWith("\r\n") ? source.substring(0, source.length() - 2)
                : source.endsWith("\n") ? source.substring(0, source.length() - 1) : source;
        this.compiled = JinjaWhitespace.normalize(trimmed);
        this.bosToken = bosToken;
        this.eosToken = eosToken;
        this.jinjava = newEnvironment();
    }

    public String source() {
        return source;
    }

    public String render(List<ChatMessage> messages, boolean addGenerationPrompt) {
        return render(messages, addGenerationPrompt, Map.of());
    }

    /**
     * Renders the conversation. {@code extraContext} adds or overrides template variables.
     *
     * @throws ChatTemplateException with the template's own message when it calls
     *                               {@code raise_exception}, or Jinja's error when it cannot render
     */
    public String render(List<ChatMessage> messages, boolean addGenerationPrompt, Map<String, ?> extraContext) {
        List<Map<String, Object>> messageMaps = new ArrayList<>(messages.size());
        for (ChatMessage m : messages) {
            Map<String, Object> map = new LinkedHashMap<>();
            map.put("role", m.role());
            map.put("content", m.content());
            messageMaps.add(map);
        }
        Map<String, Object> context = new LinkedHashMap<>();
        context.put("messages", messageMaps);
        context.put("add_generation_prompt", addGenerationPrompt);
        context.put("bos_token", bosToken == null ? "" : bosToken);
        context.put("eos_token", eosToken == null ? "" : eosToken);
        context.put("tools", null);
        context.putAll(extraContext);

        RAISED.remove();
        RenderResult result;
        try {
            result = jinjava.renderForResult(compiled, context);
        } catch (ChatTemplateException e) {
            throw e;
        } catch (RuntimeException e) {
            String raised = RAISED.get();
            if (raised != null) {
                throw new ChatTemplateException(raised, e);
            }
            throw new ChatTemplateException("chat template failed: " + e.getMessage(), e);
        } finally {
            RAISED.remove();
        }
        String raised = raisedMessage(result);
        if (raised != null) {
            throw new ChatTemplateException(raised);
        }
        for (TemplateError error : result.getErrors()) {
            if (error.getSeverity() == TemplateError.ErrorType.FATAL) {
                throw new ChatTemplateException("chat template error at line " + error.getLineno() + ": "
                        + error.getMessage(), error.getException());
            }
        }
        return result.getOutput();
    }

    private static String raisedMessage(RenderResult result) {
        for (TemplateError error : result.getErrors()) {
            for (Throwable t = error.getException(); t != null; t = t.getCause()) {
                if (t instanceof ChatTemplateException cte) {
                    return cte.getMessage();
                }
            }
        }
        return null;
    }

    /** For tests: fixes the time strftime_now sees on this thread. */
    static void useClock(Clock clock) {
        CLOCK.set(clock);
    }

    private static Jinjava newEnvironment() {
        CompositeELResolver resolver = new CompositeELResolver();
        resolver.add(new PythonMethodResolver());
        resolver.add(JinjavaInterpreterResolver.DEFAULT_RESOLVER_READ_WRITE);
        JinjavaConfig config = JinjavaConfig.newBuilder()
                .withTrimBlocks(true)
                .withLstripBlocks(true)
                .withElResolver(resolver)
                .withFailOnUnknownTokens(false)
                .build();
        Jinjava jinjava = new Jinjava(config);
        jinjava.registerFunction(new ELFunctionDefinition("", "raise_exception", ChatTemplate.class,
                "raiseException", Object.class));
        jinjava.registerFunction(new ELFunctionDefinition("", "strftime_now", ChatTemplate.class,
                "strftimeNow", String.class));
        jinjava.registerFilter(new ToJson());
        return jinjava;
    }

    /** {@code raise_exception(message)}: the template rejects the conversation. */
    public static Object raiseException(Object message) {
        String text = String.valueOf(message);
        RAISED.set(text);
        throw new ChatTemplateException(text);
    }

    /** {@code strftime_now(format)}: the current local time in Python's strftime format. */
    public static String strftimeNow(String format) {
        return PythonStrftime.format(ZonedDateTime.now(CLOCK.get()), format);
    }

    /** HF's tojson: Python json.dumps(value, ensure_ascii=False, indent=indent). */
    private static final class ToJson implements Filter {
        @Override
        public String getName() {
            return "tojson";
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
            Integer indent = args.length > 0 && args[0] != null ? Integer.valueOf(args[0]) : null;
            return PythonJson.dumps(var, indent);
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, Object[] args, Map<String, Object> kwargs) {
            Object indent = kwargs.getOrDefault("indent", args.length > 0 ? args[0] : null);
            return PythonJson.dumps(var, indent == null ? null : Integer.valueOf(indent.toString()));
        }
    }
}
