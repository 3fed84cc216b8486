// The Jinja language, feature by feature, with the results Python's Jinja2 gives under the
// environment transformers uses (trim_blocks, lstrip_blocks, immutable sandbox, loop controls).
#include <nlohmann/json.hpp>
#include <string>

#include "common/chat_template/chat_template.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvc::chat {
namespace {

using ::testing::HasSubstr;

// Renders `source` with bos_token "<s>", eos_token "</s>", no messages and `variables` (JSON).
absl::StatusOr<std::string> Render(std::string_view source, std::string_view variables = "{}") {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> parsed = ChatTemplate::Parse(source, "<s>", "</s>");
  if (!parsed.ok()) return parsed.status();
  return (*parsed)->ApplyJson(nlohmann::ordered_json::array(), false,
                              nlohmann::ordered_json::parse(variables));
}

// The rendered text, or "ERROR: " and the status.
std::string R(std::string_view source, std::string_view variables = "{}") {
  absl::StatusOr<std::string> rendered = Render(source, variables);
  return rendered.ok() ? *rendered : "ERROR: " + rendered.status().ToString();
}

absl::Status Error(std::string_view source, std::string_view variables = "{}") {
  return Render(source, variables).status();
}

TEST(ChatTemplateLanguage, TextOutputCommentsAndRaw) {
  EXPECT_EQ(R("plain text"), "plain text");
  EXPECT_EQ(R("a{{ 'b' }}c{# hidden {{ x }} #}d"), "abcd");
  EXPECT_EQ(R("{% raw %}{{ x }}{% if %}{% endraw %}"), "{{ x }}{% if %}");
  EXPECT_EQ(R("<{%- raw -%}  {{ y }}  {%- endraw -%}  >"), "<{{ y }}>");
  EXPECT_EQ(R("{{ bos_token }}|{{ eos_token }}"), "<s>|</s>");
  EXPECT_EQ(R("{{ '{{' }}x{{ '}}' }}"), "{{x}}");
}

TEST(ChatTemplateLanguage, WhitespaceControl) {
  // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before it.
  EXPECT_EQ(R("{% if true %}\n  yes\n  {% endif %}\nafter"), "  yes\nafter");
  EXPECT_EQ(R("a\n  {% if true %}\n    b\n  {% endif %}\n  c"), "a\n    b\n  c");
  // Neither applies to {{ }}: only '-' strips there.
  EXPECT_EQ(R("x\n  {{ 'v' }}\ny"), "x\n  v\ny");
  EXPECT_EQ(R("x  \n  {{- 'v' -}}  \n  y"), "xvy");
  EXPECT_EQ(R("a   {%- if true -%}   b   {%- endif -%}   c"), "abc");
  // '+' keeps what lstrip_blocks and trim_blocks would remove.
  EXPECT_EQ(R("a\n  {%+ if true +%}\nb{% endif %}"), "a\n  \nb");
  // Comments strip like blocks.
  EXPECT_EQ(R("a\n  {# c #}\nb"), "a\nb");
  // Text before a tag on a line that has other text keeps its spaces.
  EXPECT_EQ(R("{{ 'x' }}  {% if true %}y{% endif %}"), "x  y");
  // One trailing newline of the template goes; \r\n and \r become \n.
  EXPECT_EQ(R("a\r\nb\rc\n"), "a\nb\nc");
  EXPECT_EQ(R("a\n\n"), "a\n");
}

TEST(ChatTemplateLanguage, Literals) {
  EXPECT_EQ(R("{{ 42 }} {{ -7 }} {{ 1_000 }} {{ 0x1f }} {{ 0o17 }} {{ 0b101 }}"),
            "42 -7 1000 31 15 5");
  EXPECT_EQ(R("{{ 1.5 }} {{ 1.0 }} {{ 1e3 }} {{ 2.5e-3 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} "
              "{{ 0.00001 }} {{ 0.1 + 0.2 }}"),
            "1.5 1.0 1000.0 0.0025 1e+16 1000000000000000.0 0.0001 1e-05 0.30000000000000004");
  EXPECT_EQ(R(R"({{ "a\tb\n" }}|{{ 'it\'s' }}|{{ "\u00e9\x41\101" }}|{{ "\q" }}|{{ 'a' "b" }})"),
            "a\tb\n|it's|\xc3\xa9"
            "AA|\\q|ab");
  EXPECT_EQ(R("{{ true }} {{ False }} {{ none }} {{ None }}"), "True False None None");
  EXPECT_EQ(R("{{ [1, 'a', none, true, 1.5] }} {{ (1,) }} {{ (1, 2) }} {{ () }}"),
            "[1, 'a', None, True, 1.5] (1,) (1, 2) ()");
  EXPECT_EQ(R(R"({{ {'k': [1], 'q': "it's"} }} {{ ["a'b\"c", '\n\x01'] }})"),
            R"({'k': [1], 'q': "it's"} ['a\'b"c', '\n\x01'])");
}

TEST(ChatTemplateLanguage, Arithmetic) {
  EXPECT_EQ(R("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 7 // 2 }} "
              "{{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }}"),
            "7 9 3.5 2.0 3 -4 2 -2 1024 0.5");
  // ** is left-associative in Jinja and unary minus binds tighter.
  EXPECT_EQ(R("{{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ 10.5 // 3 }} {{ -10.5 % 3 }} {{ true + 1 }}"),
            "64 4 3.0 1.5 2");
  EXPECT_EQ(R("{{ 'ab' + 'cd' }} {{ 'ab' * 2 }} {{ 3 * 'x' }} {{ [1] + [2] }} {{ [0] * 3 }}"),
            "abcd abab xxx [1, 2] [0, 0, 0]");
  // ~ concatenates as strings and binds tighter than +.
  EXPECT_EQ(R("{{ 'n=' ~ 1 ~ none }} {{ 1 ~ 2 + '3' }}"), "n=1None 123");
  EXPECT_THAT(Error("{{ 'a' + 1 }}").message(), HasSubstr("can only concatenate str"));
  EXPECT_THAT(Error("{{ 1 / 0 }}").message(), HasSubstr("division by zero"));
  EXPECT_THAT(Error("{{ 9223372036854775807 + 1 }}").message(), HasSubstr("64-bit"));
}

TEST(ChatTemplateLanguage, ComparisonsAndLogic) {
  EXPECT_EQ(R("{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' != 'b' }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} "
              "{{ [1, 2] < [1, 3] }} {{ (1,) == [1] }} {{ {'a': 1} == {'a': 1} }}"),
            "True True True True False True False True");
  EXPECT_EQ(R("{{ 'b' in 'abc' }} {{ 'z' not in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 0} }}"),
            "True True True True");
  // and/or give an operand, as in Python.
  EXPECT_EQ(R("{{ 0 or 'x' }} {{ 'y' and 'z' }} {{ '' and 1 }}| {{ not none }} {{ not 1 == 2 }}"),
            "x z | True True");
  EXPECT_EQ(R("{{ 'yes' if 1 else 'no' }} {{ 'yes' if 0 else 'no' }} [{{ 'x' if false }}]"),
            "yes no []");
  EXPECT_THAT(Error("{{ 1 < 'a' }}").message(),
              HasSubstr("'<' not supported between instances of 'int' and 'str'"));
}

TEST(ChatTemplateLanguage, AttributesItemsAndSlices) {
  constexpr char kVars[] = R"({"d": {"a": 1, "b": {"c": [10, 20, 30]}}, "s": "héllo"})";
  EXPECT_EQ(R("{{ d.a }} {{ d['a'] }} {{ d.b.c[1] }} {{ d.b.c[-1] }} {{ d.b.c.0 }}", kVars),
            "1 1 20 30 10");
  // Missing attributes and items are undefined, which renders as nothing.
  EXPECT_EQ(R("[{{ d.zz }}][{{ d.b.c[9] }}][{{ s[99] }}][{{ none.x }}]", kVars), "[][][][]");
  EXPECT_EQ(R("{{ s[1] }} {{ s[1:3] }} {{ s[::-1] }} {{ s[-2:] }} {{ d.b.c[::2] }} "
              "{{ d.b.c[2:0:-1] }} {{ d.b.c[-10:10] }}",
              kVars),
            "é él olléh lo [10, 30] [30, 20] [10, 20, 30]");
  EXPECT_THAT(Error("{{ d.zz.yy }}", kVars).message(),
              HasSubstr("'dict object' has no attribute 'zz'"));
  EXPECT_THAT(Error("{{ x[1] }}").message(), HasSubstr("'x' is undefined"));
  EXPECT_THAT(Error("{{ [1][::0] }}").message(), HasSubstr("slice step cannot be zero"));
}

TEST(ChatTemplateLanguage, IfElifElse) {
  constexpr char kSource[] = "{% if n > 1 %}many{% elif n == 1 %}one{% else %}none{% endif %}";
  EXPECT_EQ(R(kSource, R"({"n": 5})"), "many");
  EXPECT_EQ(R(kSource, R"({"n": 1})"), "one");
  EXPECT_EQ(R(kSource, R"({"n": 0})"), "none");
  EXPECT_EQ(R("{% if [] %}a{% elif {} %}b{% elif '' %}c{% elif 0.0 %}d{% else %}e{% endif %}"),
            "e");
}

TEST(ChatTemplateLanguage, ForLoops) {
  EXPECT_EQ(R("{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
              "{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ x }};"
              "{% endfor %}"),
            "1032TrueFalse3a;2121FalseFalse3b;3210FalseTrue3c;");
  EXPECT_EQ(R("{% for x in [1, 2, 3] %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }} "
              "{% endfor %}"),
            "<1>2 1<2>3 2<3> ");
  EXPECT_EQ(R("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  // The filter applies before the loop: index and length count kept items only.
  EXPECT_EQ(R("{% for x in range(10) if x is odd %}{{ loop.index }}/{{ loop.length }}={{ x }} "
              "{% endfor %}"),
            "1/5=1 2/5=3 3/5=5 4/5=7 5/5=9 ");
  EXPECT_EQ(R("{% for x in [0] if x %}a{% else %}filtered{% endfor %}"), "filtered");
  EXPECT_EQ(
      R(R"({% for k, v in d.items() %}{{ k }}={{ v }} {% endfor %}{% for k in d %}{{ k }}{% endfor %})",
        R"({"d": {"b": 1, "a": 2}})"),
      "b=1 a=2 ba");
  EXPECT_EQ(R("{% for c in 'hé' %}[{{ c }}]{% endfor %}{% for (a, b) in [(1, 2)] %}{{ a + b }}"
              "{% endfor %}"),
            "[h][é]3");
  EXPECT_EQ(R("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}"
              "{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
            "0134");
  EXPECT_EQ(R("{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{% endfor %}"
              "{{ loop.index }}|{% endfor %}"),
            "121|122|");
  EXPECT_EQ(R("{% for x in [1, 2, 3] %}{{ loop.cycle('odd', 'even') }} {% endfor %}"),
            "odd even odd ");
  EXPECT_EQ(R("{% for x in undefined_list %}a{% else %}none{% endfor %}"), "none");
  EXPECT_THAT(Error("{% for x in 5 %}{% endfor %}").message(),
              HasSubstr("'int' object is not iterable"));
  EXPECT_THAT(Error("{% for a, b in [[1, 2, 3]] %}{% endfor %}").message(),
              HasSubstr("too many values to unpack"));
}

TEST(ChatTemplateLanguage, ScopingOfSetLoopsAndNamespaces) {
  // A set inside a loop is local to its iteration; namespace() carries values out.
  EXPECT_EQ(
      R("{% set x = 1 %}{% for i in range(2) %}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}"),
      "221");
  EXPECT_EQ(R("{% for i in range(3) %}{% if i == 0 %}{% set y = 'a' %}{% endif %}[{{ y }}]"
              "{% endfor %}"),
            "[a][][]");
  EXPECT_EQ(R("{% set ns = namespace(total=0, seen=[]) %}{% for i in range(4) %}"
              "{% set ns.total = ns.total + i %}{% set ns.seen = ns.seen + [i] %}{% endfor %}"
              "{{ ns.total }} {{ ns.seen }}"),
            "6 [0, 1, 2, 3]");
  // `if` opens no scope.
  EXPECT_EQ(R("{% if true %}{% set z = 3 %}{% endif %}{{ z }}"), "3");
  EXPECT_EQ(R("{% set a, b = 1, 2 %}{{ b }}{{ a }}{% set t = 1, %}{{ t }}"), "21(1,)");
  EXPECT_EQ(R("{% set block %}x{{ 1 + 1 }}{% endset %}{{ block }}"
              "{% set shout | upper | trim %} hi {% endset %}[{{ shout }}]"),
            "x2[HI]");
  EXPECT_EQ(R("{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]"), "3[]");
  EXPECT_THAT(Error("{% set s = 'x' %}{% set s.attr = 1 %}").message(),
              HasSubstr("not a namespace"));
}

TEST(ChatTemplateLanguage, Macros) {
  EXPECT_EQ(R("{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}"
              "{{ greet('Ann') }} {{ greet('Bo', 'Hi') }} {{ greet(greeting='Yo', name='Cy') }}"),
            "Hello, Ann! Hi, Bo! Yo, Cy!");
  // A missing argument is undefined; macros see the template's variables.
  EXPECT_EQ(R("{% macro m(a) %}[{{ a }}{{ bos_token }}]{% endmacro %}{{ m() }}"), "[<s>]");
  // Recursion, as json_to_python_type in tool-use templates does it.
  EXPECT_EQ(R("{% macro count(n) %}{{ n }}{% if n > 0 %}{{ count(n - 1) }}{% endif %}"
              "{% endmacro %}{{ count(3) }}"),
            "3210");
  EXPECT_THAT(Error("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}").message(),
              HasSubstr("macro 'm' takes not more than 1 argument(s)"));
  EXPECT_THAT(Error("{% macro m(a) %}{% endmacro %}{{ m(b=1) }}").message(),
              HasSubstr("macro 'm' takes no keyword argument 'b'"));
}

TEST(ChatTemplateLanguage, FilterAndGenerationBlocks) {
  EXPECT_EQ(R("{% filter upper %}ab{{ 'c' }}{% endfilter %}"), "ABC");
  EXPECT_EQ(R("{% generation %}text {{ 1 }}{% endgeneration %}"), "text 1");
}

TEST(ChatTemplateLanguage, Tests) {
  constexpr char kVars[] = R"({"n": null, "d": {}, "l": [], "s": "x", "i": 3, "f": 1.5})";
  EXPECT_EQ(R("{{ n is none }}{{ n is not none }}{{ n is defined }}{{ u is defined }}"
              "{{ u is undefined }}",
              kVars),
            "TrueFalseTrueFalseTrue");
  EXPECT_EQ(R("{{ s is string }}{{ i is string }}{{ d is mapping }}{{ l is mapping }}"
              "{{ namespace() is mapping }}",
              kVars),
            "TrueFalseTrueFalseFalse");
  EXPECT_EQ(R("{{ l is iterable }}{{ s is iterable }}{{ d is iterable }}{{ i is iterable }}"
              "{{ u is iterable }}{{ l is sequence }}{{ s is sequence }}{{ i is sequence }}",
              kVars),
            "TrueTrueTrueFalseTrueTrueTrueFalse");
  EXPECT_EQ(R("{{ i is number }}{{ f is number }}{{ true is number }}{{ s is number }}"
              "{{ i is integer }}{{ true is integer }}{{ f is float }}{{ true is boolean }}",
              kVars),
            "TrueTrueTrueFalseTrueFalseTrueTrue");
  EXPECT_EQ(R("{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 0 is false }}"),
            "TrueFalseTrueFalse");
  EXPECT_EQ(R("{{ 3 is odd }}{{ 3 is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(2) }}"
              "{{ 2 is in [1, 2] }}{{ 'a' is eq 'a' }}{{ 1 is ne 1 }}{{ 2 is gt 1 }}"
              "{{ none is sameas none }}{{ 'ab' is lower }}{{ 'AB' is upper }}"
              "{{ range is callable }}{{ 'trim' is filter }}{{ 'odd' is test }}"),
            "TrueFalseTrueFalseTrueTrueFalseTrueTrueTrueTrueTrueTrueTrue");
}

TEST(ChatTemplateLanguage, StringFilters) {
  EXPECT_EQ(R("[{{ '  a b \n' | trim }}][{{ 'xxaxx' | trim('x') }}][{{ 'Ab' | lower }}]"
              "[{{ 'Ab' | upper }}][{{ 'aB cD' | capitalize }}][{{ 'hello-world (x)' | title }}]"),
            "[a b][a][ab][AB][Ab cd][Hello-World (X)]");
  // Whitespace is Python's (no-break and ideographic spaces too); characters, not bytes.
  EXPECT_EQ(R("[{{ '\\u00a0x\\u3000' | trim }}][{{ 'ééxéé'.strip('é') }}][{{ 'é ' | trim }}]"
              "[{{ ' a\xff ' | trim }}][{{ '\xc3 ' | trim }}][{{ ' x\xa9\xa9 ' | trim }}]"),
            "[x][x][é][a\xff][\xc3][x\xa9\xa9]");
  EXPECT_EQ(R("{{ 'aXa' | replace('a', 'b') }} {{ 'aaa' | replace('a', 'b', 2) }} "
              "{{ 5 | string }}{{ none | string }} {{ 'one two  three' | wordcount }}"),
            "bXb bba 5None 3");
  EXPECT_EQ(R("{{ 'a\nb\n\nc' | indent }}|{{ 'a\nb' | indent(2, true) }}|"
              "{{ 'a\n\nb' | indent(2, blank=true) }}"),
            "a\n    b\n\n    c|  a\n  b|a\n  \n  b");
  EXPECT_EQ(R(R"({{ ('<a href="x">&' ~ "'") | e }} {{ '<b>' | safe }})"),
            "&lt;a href=&#34;x&#34;&gt;&amp;&#39; <b>");
  EXPECT_EQ(R("{{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} "
              "{{ 'ff' | int(base=16) }} {{ 3 | float }} {{ 'x' | float }} {{ -3 | abs }}"),
            "42 4 0 7 255 3.0 0.0 3");
  // Python rounds half to even; 'floor' and 'ceil' as named.
  EXPECT_EQ(R("{{ 2.5 | round }} {{ 3.5 | round }} {{ 2.567 | round(2) }} "
              "{{ 2.5 | round(0, 'floor') }} {{ 2.1 | round(method='ceil') }} {{ 3 | round }}"),
            "2.0 4.0 2.57 2.0 3.0 3");
}

TEST(ChatTemplateLanguage, SequenceFilters) {
  constexpr char kVars[] =
      R"({"people": [{"name": "b", "age": 3}, {"name": "a", "age": 1}, {"name": "c"}]})";
  EXPECT_EQ(R("{{ [1, 2, 3] | length }} {{ 'héllo' | length }} {{ {'a': 1} | count }} "
              "{{ u | length }} {{ [1, 2] | first }} {{ [1, 2] | last }} {{ 'ab' | first }} "
              "[{{ [] | first }}]"),
            "3 5 1 0 1 2 a []");
  EXPECT_EQ(R("{{ 'abc' | list }} {{ {'a': 1} | list }} {{ [1, 2] | reverse }} "
              "{{ 'abc' | reverse }} {{ {'b': 1, 'a': 2} | items | list }}"),
            "['a', 'b', 'c'] ['a'] [2, 1] cba [('b', 1), ('a', 2)]");
  EXPECT_EQ(R("{{ [1, 2, 3] | join(', ') }} {{ [1, 2] | join }} "
              "{{ people | map(attribute='name') | join('|') }}",
              kVars),
            "1, 2, 3 12 b|a|c");
  EXPECT_EQ(
      R("{{ people | map(attribute='age', default=0) | list }} "
        "{{ ['a', 'b'] | map('upper') | list }} {{ people | selectattr('age') | list | length }} "
        "{{ people[:2] | rejectattr('age', 'gt', 2) | map(attribute='name') | list }}",
        kVars),
      "[3, 1, 0] ['A', 'B'] 2 ['a']");
  EXPECT_EQ(R("{{ [1, 2, 3, 4] | select('even') | list }} {{ [1, 2, 3] | reject('equalto', 2) | "
              "list }} {{ [0, 1, ''] | select | list }}"),
            "[2, 4] [1, 3] [1]");
  EXPECT_EQ(R("{{ ['b', 'A', 'a'] | sort }} {{ ['b', 'A', 'a'] | sort(case_sensitive=true) }} "
              "{{ [3, 1, 2] | sort(reverse=true) }} {{ people | sort(attribute='name') | "
              "map(attribute='name') | join }}",
              kVars),
            "['A', 'a', 'b'] ['A', 'a', 'b'] [3, 2, 1] abc");
  EXPECT_EQ(R("{{ ['a', 'A', 'b', 'a'] | unique | list }} {{ [3, 1, 2] | max }} "
              "{{ [3, 1, 2] | min }} {{ [1, 2, 3] | sum }} {{ [1.5, 1] | sum(start=1) }} "
              "{{ people | sum(attribute='age', start=0) if false else 'skip' }}"),
            "['a', 'b'] 3 1 6 3.5 skip");
  EXPECT_EQ(R("{{ {'b': 1, 'a': 2} | dictsort }} {{ {'b': 1, 'a': 2} | dictsort(by='value') }}"),
            "[('a', 2), ('b', 1)] [('b', 1), ('a', 2)]");
  EXPECT_EQ(R("[{{ u | default('d') }}][{{ '' | default('d') }}][{{ '' | default('d', true) }}]"
              "[{{ none | default('d') }}][{{ u | d }}]"),
            "[d][][d][None][]");
  EXPECT_EQ(R("{{ {'a': 1} | attr('a') }}|{{ 'x' | attr('upper') is callable }}"), "|True");
  EXPECT_THAT(Error("{{ 5 | items }}").message(), HasSubstr("Can only get item pairs"));
  EXPECT_THAT(Error("{{ [1, 'a'] | sort }}").message(), HasSubstr("not supported"));
}

TEST(ChatTemplateLanguage, PercentFormatting) {
  EXPECT_EQ(R(R"({{ "%s-%s" % (1, 'a') }}|{{ "%d" % 3.9 }}|{{ "%05.2f" % 3.14159 }}|)"
              R"({{ "%x %X %o %#o %#x" % (255, 255, 8, 8, 255) }}|{{ "%-3s|%3s" % ('a', 'b') }}|)"
              R"({{ "%r %c%c %%" % ('q', 65, 'é') }}|{{ "%(a)s=%(b)d" % {'a': 'x', 'b': 2} }}|)"
              R"({{ "%.2s %*d %+d" % ('hello', 3, 7, 5) }}|{{ "%e %g" % (12345.678, 0.0001) }})"),
            "1-a|3|03.14|ff FF 10 0o10 0xff|a  |  b|'q' Aé %|x=2|he   7 +5|1.234568e+04 0.0001");
  EXPECT_EQ(R(R"({{ "%s and %s" | format('a', 'b') }}|{{ "%(x)s" | format(x=5) }})"), "a and b|5");
  EXPECT_THAT(Error(R"({{ "%s %s" % (1,) }})").message(),
              HasSubstr("not enough arguments for format string"));
  EXPECT_THAT(Error(R"({{ "%s" % (1, 2) }})").message(), HasSubstr("not all arguments converted"));
  EXPECT_THAT(Error(R"({{ "%d" % 'x' }})").message(),
              HasSubstr("%d format: a real number is required, not str"));
}

TEST(ChatTemplateLanguage, ToJson) {
  constexpr char kVars[] =
      R"({"v": {"b": [1, 2.5, null, true, "q\"\\\n\u0001é"], "a": {}, "e": []}})";
  EXPECT_EQ(R("{{ v | tojson }}", kVars),
            R"({"b": [1, 2.5, null, true, "q\"\\\n\u0001é"], "a": {}, "e": []})");
  EXPECT_EQ(R("{{ v.b[:2] | tojson(indent=2) }}|{{ {'k': [1]} | tojson(indent=2) }}|"
              "{{ [] | tojson(indent=2) }}",
              kVars),
            "[\n  1,\n  2.5\n]|{\n  \"k\": [\n    1\n  ]\n}|[]");
  EXPECT_EQ(
      R("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }} {{ 'é😀' | tojson(ensure_ascii=true) }} "
        "{{ [1, 2] | tojson(separators=(',', ':')) }} {{ (1, 'x') | tojson }} "
        "{{ 1e100 | tojson }} {{ {1: 'int key'} | tojson }}"),
      R"({"a": 2, "b": 1} "\u00e9\ud83d\ude00" [1,2] [1, "x"] 1e+100 {"1": "int key"})");
  // Hugging Face's tojson does not escape HTML, unlike Jinja's own.
  EXPECT_EQ(R("{{ '<tool>&' | tojson }}"), R"("<tool>&")");
  EXPECT_THAT(Error("{{ u | tojson }}").message(),
              HasSubstr("Object of type Undefined is not JSON serializable"));
}

TEST(ChatTemplateLanguage, StringAndDictMethods) {
  constexpr char kVars[] = R"({"s": "Hello World", "d": {"a": 1}})";
  EXPECT_EQ(
      R("{{ s.startswith('Hell') }}{{ s.startswith(('x', 'H')) }}{{ s.endswith('x') }} "
        "{{ s.lower() }} {{ s.upper() }} {{ 'hello wORLD'.title() }} {{ 'aBC'.capitalize() }}",
        kVars),
      "TrueTrueFalse hello world HELLO WORLD Hello World Abc");
  EXPECT_EQ(R("{{ s.split() }} {{ s.split('o') }} {{ s.split('o', 1) }} {{ s.rsplit('o', 1) }} "
              "{{ '  a  b '.split(None, 1) }} {{ ''.split(',') }}",
              kVars),
            "['Hello', 'World'] ['Hell', ' W', 'rld'] ['Hell', ' World'] ['Hello W', 'rld'] "
            "['a', 'b '] ['']");
  EXPECT_EQ(R("[{{ '\n x \n'.strip() }}][{{ 'xxaxx'.lstrip('x') }}][{{ 'xxaxx'.rstrip('x') }}]"
              "[{{ '\n\nt'.lstrip('\n') }}]"),
            "[x][axx][xxa][t]");
  EXPECT_EQ(R("{{ s.replace('l', 'L') }} {{ s.replace('l', '', 1) }} {{ s.find('o') }} "
              "{{ s.find('z') }} {{ s.count('l') }} {{ '-'.join(['a', 'b']) }}",
              kVars),
            "HeLLo WorLd Helo World 4 -1 3 a-b");
  EXPECT_EQ(R("{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 5) }} {{ d.keys() | list }} "
              "{{ d.values() | list }} {{ d.items() | list }}",
              kVars),
            "1 None 5 ['a'] [1] [('a', 1)]");
  // Reasoning split, as Qwen3 and DeepSeek-R1 do it.
  EXPECT_EQ(R("{{ c.split('</think>')[-1].lstrip('\n') }}|"
              "{{ c.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') }}",
              R"({"c": "<think>\nplan\n</think>\n\nanswer"})"),
            "answer|plan");
  EXPECT_THAT(Error("{{ s.nope() }}", kVars).message(),
              HasSubstr("'str object' has no attribute 'nope'"));
  // The sandbox is immutable: lists have no append.
  EXPECT_THAT(Error("{% set l = [] %}{{ l.append(1) }}").message(),
              HasSubstr("'list object' has no attribute 'append'"));
}

TEST(ChatTemplateLanguage, Globals) {
  EXPECT_EQ(R("{{ range(3) | list }} {{ range(2, 5) | list }} {{ range(10, 0, -4) | list }}"),
            "[0, 1, 2] [2, 3, 4] [10, 6, 2]");
  EXPECT_EQ(R("{{ dict(a=1, b='x') }} {{ namespace(a=1) }} {{ namespace({'k': 2}).k }}"),
            "{'a': 1, 'b': 'x'} <Namespace {'a': 1}> 2");
  EXPECT_THAT(Error("{{ range(100001) | length }}").message(), HasSubstr("range too big"));
  EXPECT_THAT(Error("{{ range(1, 2, 0) }}").message(), HasSubstr("must not be zero"));
}

TEST(ChatTemplateLanguage, UndefinedBehavesLikeJinjasDefault) {
  EXPECT_EQ(R("[{{ u }}][{{ u | length }}][{{ u == u }}][{{ u ~ 'x' }}][{{ 'x' in u }}]"
              "[{% for a in u %}z{% endfor %}][{{ 'falsy' if not u }}][{{ u | trim }}]"),
            "[][0][True][x][False][][falsy][]");
  EXPECT_THAT(Error("{{ u.attr }}").message(), HasSubstr("'u' is undefined"));
  EXPECT_THAT(Error("{{ u + 1 }}").message(), HasSubstr("'u' is undefined"));
  EXPECT_THAT(Error("{{ u() }}").message(), HasSubstr("'u' is undefined"));
  EXPECT_THAT(Error("{{ u < 1 }}").message(), HasSubstr("'u' is undefined"));
}

TEST(ChatTemplateErrors, SyntaxErrorsGiveLineAndColumn) {
  struct Case {
    const char* source;
    const char* message;
  };
  const Case cases[] = {
      {"ok\n  {% if %}", "line 2, column 9: expected an expression, got end of statement block"},
      {"{{ 1 +", "line 1, column 1: unexpected end of template, expected '}}'"},
      {"a\n{% for x in y %}\nbody",
       "line 2, column 4: unexpected end of template: the 'for' block"},
      {"{% if x %}{% else %}{% elif y %}{% endif %}", "line 1, column 24: unexpected tag 'elif'"},
      {"{% endfor %}", "line 1, column 4: unexpected tag 'endfor'"},
      {"{% frobnicate %}", "line 1, column 4: unknown tag 'frobnicate'"},
      {"{% include 'x' %}", "the Jinja tag 'include' is not supported in chat templates"},
      {"\n\n   {{ x | nofilter }}", "line 3, column 11: no filter named 'nofilter'"},
      {"{{ x is notatest }}", "line 1, column 9: no test named 'notatest'"},
      {"{{ 'unterminated }}", "line 1, column 4: unterminated string literal"},
      {"{# never closed", "line 1, column 1: missing end of comment tag"},
      {"{{ (1 ] }}", "line 1, column 7: unexpected ']', expected ')'"},
      {"{{ x @ y }}", "line 1, column 6: unexpected char '@'"},
      {"{% break %}", "line 1, column 4: 'break' outside loop"},
      {"{% for x in y %}{% macro m() %}{% continue %}{% endmacro %}{% endfor %}",
       "'continue' outside loop"},
      {"{% raw %}never closed", "line 1, column 1: missing end of raw directive"},
      {"{{ '\\x4' }}", "truncated \\x escape"},
      {"{{ 99999999999999999999 }}", "integer literal too large"},
      {"{{ }}", "expected an expression, got end of print statement"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::unique_ptr<ChatTemplate>> parsed = ChatTemplate::Parse(c.source, "", "");
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << c.source;
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.message)) << c.source;
  }
}

TEST(ChatTemplateErrors, RuntimeErrorsGiveLineAndColumn) {
  const absl::Status status = Error("line one\n{% for m in messages %}{% endfor %}{{ 1 + none }}");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "chat template error at line 2, column 41: unsupported operand type(s) for +: 'int' "
            "and 'NoneType'");
}

TEST(ChatTemplateErrors, RunawayTemplatesStopWithResourceExhausted) {
  // Output past 64 MiB.
  EXPECT_EQ(Error("{{ 'x' * 100000000 }}").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Error("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}").code(),
            absl::StatusCode::kResourceExhausted);
  // Unbounded recursion.
  const absl::Status recursion = Error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  EXPECT_EQ(recursion.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(recursion.message(), HasSubstr("macro calls nested deeper than 64"));
  // Nesting beyond the parser's depth bound is a syntax error, not a stack overflow.
  const std::string deep =
      "{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}";
  EXPECT_THAT(Error(deep).message(), HasSubstr("nested too deeply"));
  std::string blocks;
  for (int i = 0; i < 5000; ++i) blocks += "{% if true %}";
  EXPECT_THAT(Error(blocks).message(), HasSubstr("nested too deeply"));
}

}  // namespace
}  // namespace kvc::chat
