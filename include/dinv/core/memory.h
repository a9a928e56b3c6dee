// Process-wide memory settings.
#pragma once

namespace dinv::core {

// Keep freed memory in the process instead of handing it back to the kernel
// (glibc malloc: no mmap for large blocks, no trimming). Tensor code frees and
// reallocates the same large buffers (convolution workspaces, activations)
// on every call; with glibc's defaults each one is a fresh mmap whose pages
// the kernel must fault in and zero again. Measured on the SD 1.5 UNet on
// CPU: about 20% of a forward pass (bench/RESULTS.md). The price: the
// resident set stays at its high-water mark until exit, which suits batch jobs.
// Set DINV_MALLOC=default to keep glibc's behaviour. Call once, early.
void configure_malloc();

}  // namespace dinv::core
