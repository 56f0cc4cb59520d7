package dev.lathe.core.tokenizer;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Real templates (the chat_template strings of the models' tokenizer_config.json) against the
 * strings HF's apply_chat_template produces, worked out by hand from each template.
 */
class ChatTemplateTest {

    static final List<ChatMessage> CONVERSATION = List.of(
            ChatMessage.system("You are a helpful assistant."),
            ChatMessage.user("Hello!"),
            ChatMessage.assistant("Hi there."),
            ChatMessage.user("What is 2+2?"));

    @AfterEach
    void resetClock() {
        ChatTemplate.useClock(Clock.systemDefaultZone());
    }

    @Test
    void llama31InsertsKnowledgeCutoffAndDefaultDateIntoSystemMessage() {
        ChatTemplate t = new ChatTemplate(TinyTokenizer.template("llama-3.1-8b-instruct.jinja"),
                "<|begin_of_text|>", "<|eot_id|>");
        assertThat(t.render(CONVERSATION, true)).isEqualTo(
                "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                        + "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
                        + "You are a helpful assistant.<|eot_id|>"
                        + "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
                        + "<|start_header_id|>assistant<|end_header_id|>\n\nHi there.<|eot_id|>"
                        + "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
                        + "<|start_header_id|>assistant<|end_header_id|>\n\n");
    }

    @Test
    void llama31WithoutSystemMessageOrGenerationPromptTrimsContent() {
        ChatTemplate t = new ChatTemplate(TinyTokenizer.template("llama-3.1-8b-instruct.jinja"),
                "<|begin_of_text|>", "<|eot_id|>");
        assertThat(t.render(List.of(ChatMessage.user("  Hi\n")), false, Map.of("date_string", "1 Jan 2025")))
                .isEqualTo("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                        + "Cutting Knowledge Date: December 2023\nToday Date: 1 Jan 2025\n\n<|eot_id|>"
                        + "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
    }

    @Test
    void qwen25UsesChatMlAndItsDefaultSystemPromptWhenNoneIsGiven() {
        ChatTemplate t = new ChatTemplate(TinyTokenizer.template("qwen-2.5-7b-instruct.jinja"),
                null, "<|im_end|>");
        assertThat(t.render(CONVERSATION, true)).isEqualTo(
                "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                        + "<|im_start|>user\nHello!<|im_end|>\n"
                        + "<|im_start|>assistant\nHi there.<|im_end|>\n"
                        + "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                        + "<|im_start|>assistant\n");
        assertThat(t.render(List.of(ChatMessage.user("Hi")), false)).isEqualTo(
                "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                        + "<|im_start|>user\nHi<|im_end|>\n");
    }

    @Test
    void mistralV03PutsSystemMessageIntoTheLastUserTurn() {
        ChatTemplate t = new ChatTemplate(TinyTokenizer.template("mistral-7b-instruct-v0.3.jinja"), "<s>", "</s>");
        assertThat(t.render(CONVERSATION, true)).isEqualTo(
                "<s>[INST]Hello![/INST]Hi there.</s>[INST]You are a helpful assistant.\n\nWhat is 2+2?[/INST]");
    }

    @Test
    void mistralV03RejectsNonAlternatingRoles() {
        ChatTemplate t = new ChatTemplate(TinyTokenizer.template("mistral-7b-instruct-v0.3.jinja"), "<s>", "</s>");
        assertThatThrownBy(() -> t.render(List.of(ChatMessage.user("a"), ChatMessage.user("b")), true))
                .isInstanceOf(ChatTemplateException.class)
                .hasMessage("After the optional system message, conversation roles must alternate "
                        + "user/assistant/user/assistant/...");
    }

    @Test
    void trimBlocksAndLstripBlocksDropLinesHoldingOnlyBlockTags() {
        String source = "{% for m in messages %}\n  {% if m.role == 'user' %}\nU:{{ m.content }}\n  {% endif %}\n{% endfor %}";
        ChatTemplate t = new ChatTemplate(source, null, null);
        assertThat(t.render(List.of(ChatMessage.user("a"), ChatMessage.assistant("b"), ChatMessage.user("c")), false))
                .isEqualTo("U:a\nU:c\n");
    }

    @Test
    void oneTrailingNewlineOfTheTemplateIsDroppedAsJinja2Does() {
        assertThat(new ChatTemplate("x{{ 1 }}\n", null, null).render(List.of(), false)).isEqualTo("x1");
        assertThat(new ChatTemplate("x\n\n", null, null).render(List.of(), false)).isEqualTo("x\n");
    }

    @Test
    void loopHelpersSlicingAndTests() {
        String source = "{% for m in messages[1:] %}{{ m.content }}{% if not loop.last %},{% endif %}{% endfor %}"
                + "|{{ messages[-1].content }}|{{ messages[0].content is string }}|{{ messages | length }}"
                + "|{{ 'role' in messages[0] }}|{{ messages[0].missing is defined }}";
        assertThat(new ChatTemplate(source, null, null).render(
                List.of(ChatMessage.user("a"), ChatMessage.user("b"), ChatMessage.user("c")), false))
                .isEqualTo("b,c|c|true|3|true|false");
    }

    @Test
    void breakAndContinueControlLoops() {
        String source = "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
                + "{% if m.content == 'stop' %}{% break %}{% endif %}{{ m.content }}{% endfor %}";
        List<ChatMessage> messages = List.of(ChatMessage.system("s"), ChatMessage.user("a"),
                ChatMessage.assistant("b"), ChatMessage.user("stop"), ChatMessage.user("never"));
        assertThat(new ChatTemplate(source, null, null).render(messages, false)).isEqualTo("ab");
    }

    @Test
    void namespaceCarriesStateOutOfLoops() {
        String source = "{% set ns = namespace(count=0, last='') %}{% for m in messages %}"
                + "{% set ns.count = ns.count + 1 %}{% set ns.last = m.role %}{% endfor %}{{ ns.count }} {{ ns.last }}";
        assertThat(new ChatTemplate(source, null, null).render(
                List.of(ChatMessage.user("a"), ChatMessage.assistant("b")), false)).isEqualTo("2 assistant");
    }

    @Test
    void pythonStringMethods() {
        String source = "{{ '  a b  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ '  a'.lstrip() }}|{{ 'a  '.rstrip() }}"
                + "|{{ 'Hello'.startswith('He') }}|{{ 'Hello'.endswith(('x', 'lo')) }}|{{ 'a  b\\nc'.split() }}"
                + "|{{ 'a,b,,c'.split(',') }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'MiXed'.upper() }}{{ 'MiXed'.lower() }}"
                + "|{{ 'hello world'.title() }}|{{ 'a.b.c'.replace('.', '-') }}|{{ '<think>x</think>y'.split('</think>')[-1] }}"
                + "|{{ ' x ' | trim }}";
        assertThat(new ChatTemplate(source, null, null).render(List.of(), false)).isEqualTo(
                "a b|hi|a|a|true|true|[a, b, c]|[a, b, , c]|[a, b,c]|MIXEDmixed|Hello World|a-b-c|y|x");
    }

    @Test
    void dictItemsForTools() {
        String source = "{% for k, v in {'a': 1, 'b': 'two'}.items() %}{{ k }}={{ v }};{% endfor %}";
        assertThat(new ChatTemplate(source, null, null).render(List.of(), false)).isEqualTo("a=1;b=two;");
    }

    @Test
    void tojsonWritesPythonJsonDumpsWithNonAsciiKept() {
        String source = "{{ {'name': 'f', 'args': [1, 2.5, true, none], 'text': 'é \"q\"\\n'} | tojson }}";
        assertThat(new ChatTemplate(source, null, null).render(List.of(), false))
                .isEqualTo("{\"name\": \"f\", \"args\": [1, 2.5, true, null], \"text\": \"é \\\"q\\\"\\n\"}");
        String indented = "{{ {'a': [1, {}], 'b': []} | tojson(indent=2) }}";
        assertThat(new ChatTemplate(indented, null, null).render(List.of(), false))
                .isEqualTo("{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}");
    }

    @Test
    void strftimeNowFormatsTheCurrentTimeLikePython() {
        ChatTemplate.useClock(Clock.fixed(Instant.parse("2024-07-05T13:04:09Z"), ZoneOffset.UTC));
        String source = "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%B %-d, %Y %H:%M:%S %A') }}|{{ strftime_now('%Y-%m-%d') }}";
        assertThat(new ChatTemplate(source, null, null).render(List.of(), false))
                .isEqualTo("05 Jul 2024|July 5, 2024 13:04:09 Friday|2024-07-05");
    }

    @Test
    void raiseExceptionCarriesTheTemplatesMessage() {
        ChatTemplate t = new ChatTemplate("{% if messages | length == 0 %}{{ raise_exception('no messages!') }}{% endif %}ok",
                null, null);
        assertThatThrownBy(() -> t.render(List.of(), false))
                .isInstanceOf(ChatTemplateException.class).hasMessage("no messages!");
        assertThat(t.render(List.of(ChatMessage.user("x")), false)).isEqualTo("ok");
    }

    @Test
    void syntaxErrorsAreReportedWithTheirLine() {
        ChatTemplate t = new ChatTemplate("line one\n{% for m in messages %}{{ m.content }}", null, null);
        assertThatThrownBy(() -> t.render(List.of(ChatMessage.user("x")), false))
                .isInstanceOf(ChatTemplateException.class).hasMessageContaining("line");
    }
}
