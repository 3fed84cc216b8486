// Splits a Jinja template into tokens: text between tags (with Jinja's whitespace control already
// applied) and the tokens inside {{ }} and {% %}; comments and {% raw %} are resolved here.
// Internal to common/chat_template.
#ifndef KVCLUSTER_COMMON_CHAT_TEMPLATE_LEXER_H_
#define KVCLUSTER_COMMON_CHAT_TEMPLATE_LEXER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvc::chat::internal {

enum class TokenKind {
  kData,           // Template text to copy to the output.
  kVariableBegin,  // {{
  kVariableEnd,    // }}
  kBlockBegin,     // {%
  kBlockEnd,       // %}
  kName,
  kString,
  kInteger,
  kFloat,
  kOperator,
  kEnd,  // End of the template; always the last token.
};

struct Token {
  TokenKind kind;
  // Data text, a name, a string literal's value, or an operator's spelling.
  std::string text;
  int64_t integer = 0;
  double real = 0;
  size_t offset = 0;  // Where the token starts in the normalized source.
};

// The environment options that change lexing. Hugging Face renders chat templates with
// trim_blocks and lstrip_blocks on, the defaults here.
struct LexerOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// What Jinja does before lexing: every \r\n, \r and \n becomes \n, and one trailing newline is
// dropped (keep_trailing_newline is off). Token offsets and error positions refer to this text.
std::string NormalizeSource(std::string_view source);

// INVALID_ARGUMENT, with line and column, for an unterminated tag, comment, string or raw block,
// an unexpected character or unbalanced brackets.
absl::StatusOr<std::vector<Token>> Tokenize(std::string_view normalized_source,
                                            const LexerOptions& options = {});

// "line 3, column 7" (both from 1) for an offset into `source`.
std::string DescribeOffset(std::string_view source, size_t offset);

}  // namespace kvc::chat::internal

#endif  // KVCLUSTER_COMMON_CHAT_TEMPLATE_LEXER_H_
