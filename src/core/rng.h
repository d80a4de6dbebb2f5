// Reproducible random numbers: one splitmix64 step (Steele, Lea, Flood 2014) and a small generator on top of it.
// Every random stream in dsmoe (weight init, data order, the synthetic corpus, sampling, test rows) draws from
// splitmix64 because its arithmetic is specified exactly, so every platform and compiler draws the same numbers;
// std:: distributions are implementation-defined.
#pragma once
#include <cmath>
#include <cstdint>

namespace dsmoe {

// Advance `state` by one step and return the mixed output: one 64-bit state, full period.
inline uint64_t splitmix64_next(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// splitmix64 with uniform and normal (Box-Muller) draws.
struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed) {}
  uint64_t next_u64() { return splitmix64_next(state); }
  // [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }
  double normal() {
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
};

}  // namespace dsmoe
