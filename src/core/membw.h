// The machine's memory read bandwidth: the ceiling of decoding, which reads every active weight once per token.
#pragma once
#include <cstddef>

namespace dsmoe {

// Best-of-5 GB/s of summing a buffer of `bytes` (default 1 GiB, far beyond the caches) with the current threads.
double memory_read_bandwidth_gbs(size_t bytes = size_t{1} << 30);

}  // namespace dsmoe
