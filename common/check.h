// KVC_CHECK: aborts with a message when an invariant is broken. Expected failures (bad input,
// resources running out, peers going away) return absl::Status instead; see STYLE.md.
#ifndef KVCLUSTER_COMMON_CHECK_H_
#define KVCLUSTER_COMMON_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define KVC_CHECK(condition, message)                                                       \
  do {                                                                                      \
    if (!(condition)) [[unlikely]] {                                                        \
      std::fprintf(stderr, "%s:%d: check failed: %s: %s\n", __FILE__, __LINE__, #condition, \
                   message);                                                                \
      std::abort();                                                                         \
    }                                                                                       \
  } while (false)

#endif  // KVCLUSTER_COMMON_CHECK_H_
