#include "dinv/core/memory.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace dinv::core {

void configure_malloc() {
#if defined(__GLIBC__)
  const char* env = std::getenv("DINV_MALLOC");
  if (env && std::strcmp(env, "default") == 0) return;
  mallopt(M_MMAP_MAX, 0);              // large blocks from the heap, reused after free
  mallopt(M_TRIM_THRESHOLD, 1 << 30);  // return memory to the kernel only beyond 1 GiB of free top
  mallopt(M_TOP_PAD, 64 << 20);        // grow the heap in 64 MiB steps
#endif
}

}  // namespace dinv::core
