// FloatBuffer — a 64-byte aligned, zero-initialised float array; Workspace — named scratch buffers that persist
// across steps, so the training loop does not page-fault fresh allocations every step.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace dsmoe {

class FloatBuffer {
 public:
  FloatBuffer() = default;
  explicit FloatBuffer(size_t n);  // zero-filled
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  size_t size() const { return size_; }
  float& operator[](size_t i) { return data_[i]; }
  float operator[](size_t i) const { return data_[i]; }
  void zero();
  // Make room for at least n floats; contents are unspecified after growing.
  void reserve(size_t n) {
    if (n > size_) *this = FloatBuffer(n);
  }

 private:
  struct Free {
    void operator()(float* p) const;
  };
  std::unique_ptr<float[], Free> data_;
  size_t size_ = 0;
};

class Workspace {
 public:
  // A buffer of at least n floats under `name`, kept between calls. Contents are whatever was left there.
  float* get(const std::string& name, size_t n) {
    FloatBuffer& b = buffers_[name];
    b.reserve(n);
    return b.data();
  }
  size_t bytes() const {
    size_t total = 0;
    for (const auto& [name, b] : buffers_) total += b.size() * sizeof(float);
    return total;
  }

 private:
  std::map<std::string, FloatBuffer> buffers_;
};

}  // namespace dsmoe
