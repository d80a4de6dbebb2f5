#include "core/buffer.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace dsmoe {

FloatBuffer::FloatBuffer(size_t n) : size_(n) {
  const size_t bytes = n == 0 ? 64 : (n * sizeof(float) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  data_.reset(static_cast<float*>(p));
}

void FloatBuffer::Free::operator()(float* p) const { std::free(p); }

void FloatBuffer::zero() {
  if (size_ != 0) std::memset(data_.get(), 0, size_ * sizeof(float));
}

}  // namespace dsmoe
