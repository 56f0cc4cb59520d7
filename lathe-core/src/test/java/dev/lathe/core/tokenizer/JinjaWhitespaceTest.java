package dev.lathe.core.tokenizer;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** Whitespace control that Jinjava lacks, checked against what Jinja2 (trim/lstrip blocks on) renders. */
class JinjaWhitespaceTest {

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', quoteCharacter = '`', value = {
            "`A\\n  {{- 'x' }}`              | `Ax`",
            "`A {{ 'x' -}}  \\n B`           | `A xB`",
            "`{{- '}}' -}} B`                | `}}B`",
            "`A\\n{#- c #}\\nB`              | `AB`",
            "`A\\n  {# c #}\\nB`             | `A\\nB`",
            "`A {# c -#}\\n B`               | `A B`",
            "`A {%- if true -%}\\n X {%- endif -%}  B` | `AXB`",
            "`A\\n{%+ if true %}x{% endif %}` | `A\\nx`",
    })
    void rendersLikeJinja2(String template, String expected) {
        String source = template.replace("\\n", "\n");
        assertThat(new ChatTemplate(source, null, null).render(List.of(), false))
                .isEqualTo(expected.replace("\\n", "\n"));
    }
}
