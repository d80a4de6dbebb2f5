// Writes ggml's results for the rows of tests/kquant_rows.h to stdout: the reference data file
// tests/data/kquant_ggml_ref.txt that tests/test_kquant.cpp compares dsmoe's block quantizers against.
// Built by hand against a local llama.cpp build (see README.md); not part of the CMake build.
//
// Per type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL), for kRowCount rows of kRowLength weights:
//   - ggml_quantize_chunk(type, row, nrows = 1, no importance matrix): what llama-quantize writes;
//   - FNV-1a 64 of the quantized bytes per chunk of kChunkRows rows ("quant"), and of the f32 bits that ggml's
//     to_float (dequantize_row_*) makes of them ("dequant");
//   - the quantized bytes of the first kExampleRows rows in hex ("row"), for diagnosing a mismatch;
//   - FNV-1a 64 of ggml's dequantization of kRandomBlockRows rows of random block bytes ("random_dequant").
// It also checks that quantize_row_<type>_ref gives the same bytes as ggml_quantize_chunk (true for every type
// but IQ4_NL, whose file path is a different search) and that kquant_rows.h's block layouts are ggml's.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ggml-cpu.h"
#include "ggml-quants.h"
#include "ggml.h"
#include "kquant_rows.h"

namespace {

using kquant_rows::kLayouts;

// kquant_rows.h's layout table against ggml's structs.
#define CHECK_LAYOUT(index, block, f0, f1)                                            \
  static_assert(kLayouts[index].block_bytes == sizeof(block), #block " size");        \
  static_assert(kLayouts[index].half_offsets[0] == (f0), #block " first fp16 field"); \
  static_assert(kLayouts[index].half_offsets[1] == (f1), #block " second fp16 field")
CHECK_LAYOUT(0, block_q4_0, offsetof(block_q4_0, d), -1);
CHECK_LAYOUT(1, block_q4_1, offsetof(block_q4_1, d), offsetof(block_q4_1, m));
CHECK_LAYOUT(2, block_q5_0, offsetof(block_q5_0, d), -1);
CHECK_LAYOUT(3, block_q5_1, offsetof(block_q5_1, d), offsetof(block_q5_1, m));
CHECK_LAYOUT(4, block_q8_0, offsetof(block_q8_0, d), -1);
CHECK_LAYOUT(5, block_q2_K, offsetof(block_q2_K, d), offsetof(block_q2_K, dmin));
CHECK_LAYOUT(6, block_q3_K, offsetof(block_q3_K, d), -1);
CHECK_LAYOUT(7, block_q4_K, offsetof(block_q4_K, d), offsetof(block_q4_K, dmin));
CHECK_LAYOUT(8, block_q5_K, offsetof(block_q5_K, d), offsetof(block_q5_K, dmin));
CHECK_LAYOUT(9, block_q6_K, offsetof(block_q6_K, d), -1);
CHECK_LAYOUT(10, block_iq4_nl, offsetof(block_iq4_nl, d), -1);

struct TypeRef {
  ggml_type type;
  const char* name;                                 // dsmoe's quant_type_name
  void (*ref)(const float* x, void* y, int64_t k);  // quantize_row_<type>_ref, or nullptr (IQ4_NL)
};
#define REF(fn, block) [](const float* x, void* y, int64_t k) { fn(x, static_cast<block*>(y), k); }
const TypeRef kTypes[] = {
    {GGML_TYPE_Q4_0, "Q4_0", REF(quantize_row_q4_0_ref, block_q4_0)},
    {GGML_TYPE_Q4_1, "Q4_1", REF(quantize_row_q4_1_ref, block_q4_1)},
    {GGML_TYPE_Q5_0, "Q5_0", REF(quantize_row_q5_0_ref, block_q5_0)},
    {GGML_TYPE_Q5_1, "Q5_1", REF(quantize_row_q5_1_ref, block_q5_1)},
    {GGML_TYPE_Q8_0, "Q8_0", REF(quantize_row_q8_0_ref, block_q8_0)},
    {GGML_TYPE_Q2_K, "Q2_K", REF(quantize_row_q2_K_ref, block_q2_K)},
    {GGML_TYPE_Q3_K, "Q3_K", REF(quantize_row_q3_K_ref, block_q3_K)},
    {GGML_TYPE_Q4_K, "Q4_K", REF(quantize_row_q4_K_ref, block_q4_K)},
    {GGML_TYPE_Q5_K, "Q5_K", REF(quantize_row_q5_K_ref, block_q5_K)},
    {GGML_TYPE_Q6_K, "Q6_K", REF(quantize_row_q6_K_ref, block_q6_K)},
    {GGML_TYPE_IQ4_NL, "IQ4_NL", nullptr},
};

void print_hash(const char* type, const char* what, int index, const kquant_rows::Fnv1a& h) {
  std::printf("%s %s %d %016llx\n", type, what, index, static_cast<unsigned long long>(h.h));
}

}  // namespace

int main() {
  using namespace kquant_rows;
  // ggml_init fills ggml's fp16 -> f32 table, which the dequantizers read.
  ggml_init_params params = {1024, nullptr, true};
  ggml_context* ctx = ggml_init(params);

  std::printf("# ggml reference data for tests/test_kquant.cpp, written by tools/ggml_ref/ggml_ref_vectors.cpp\n");
  std::printf(
      "# (llama.cpp ggml, ggml_quantize_chunk without importance matrix + to_float). Rows: tests/kquant_rows.h.\n");
  std::printf("# Lines: rows input 0 FNV1A64 (the input floats), TYPE quant|dequant CHUNK FNV1A64,\n");
  std::printf("# TYPE random_dequant 0 FNV1A64, TYPE row ROW HEX (quantized bytes).\n");
  std::printf("config rows %d length %d chunk %d examples %d random_rows %d kinds %d\n", kRowCount, kRowLength,
              kChunkRows, kExampleRows, kRandomBlockRows, kKindCount);

  std::vector<float> x(kRowLength), y(kRowLength);
  Fnv1a rows_hash;  // the generated floats themselves: tells a generator difference from a quantizer difference
  for (int r = 0; r < kRowCount; ++r) {
    make_row(r, x.data());
    rows_hash.add(x.data(), x.size() * sizeof(float));
  }
  print_hash("rows", "input", 0, rows_hash);
  int failures = 0;
  for (size_t ti = 0; ti < sizeof(kTypes) / sizeof(kTypes[0]); ++ti) {
    const TypeRef& t = kTypes[ti];
    const BlockLayout& layout = kLayouts[ti];
    if (layout.ggml_type != static_cast<uint32_t>(t.type)) {
      std::fprintf(stderr, "layout table order differs from the type list at %s\n", t.name);
      return 1;
    }
    const size_t row_bytes = ggml_row_size(t.type, kRowLength);
    std::vector<uint8_t> q(row_bytes), q_ref(row_bytes);
    const ggml_type_traits* traits = ggml_get_type_traits(t.type);
    int ref_mismatches = 0;
    Fnv1a quant_hash, dequant_hash;
    for (int r = 0; r < kRowCount; ++r) {
      make_row(r, x.data());
      ggml_quantize_chunk(t.type, x.data(), q.data(), 0, 1, kRowLength, nullptr);
      if (t.ref != nullptr) {
        t.ref(x.data(), q_ref.data(), kRowLength);
        if (std::memcmp(q.data(), q_ref.data(), row_bytes) != 0) ++ref_mismatches;
      }
      traits->to_float(q.data(), y.data(), kRowLength);
      quant_hash.add(q.data(), row_bytes);
      dequant_hash.add(y.data(), y.size() * sizeof(float));
      if (r < kExampleRows) {
        std::printf("%s row %d ", t.name, r);
        for (uint8_t b : q) std::printf("%02x", b);
        std::printf("\n");
      }
      if ((r + 1) % kChunkRows == 0) {
        print_hash(t.name, "quant", r / kChunkRows, quant_hash);
        print_hash(t.name, "dequant", r / kChunkRows, dequant_hash);
        quant_hash = Fnv1a();
        dequant_hash = Fnv1a();
      }
    }
    Fnv1a random_hash;
    for (int r = 0; r < kRandomBlockRows; ++r) {
      make_random_blocks(layout, r, q.data());
      traits->to_float(q.data(), y.data(), kRowLength);
      random_hash.add(y.data(), y.size() * sizeof(float));
    }
    print_hash(t.name, "random_dequant", 0, random_hash);
    std::fprintf(stderr, "%-6s %d rows; quantize_row_*_ref differs from ggml_quantize_chunk in %s rows\n", t.name,
                 kRowCount, t.ref ? std::to_string(ref_mismatches).c_str() : "(not compared)");
    failures += ref_mismatches;
  }
  // The activations llama.cpp's CPU backend makes for its integer dot products (the from_float of the vec_dot type:
  // Q8_0 for the 32-blocks, x86 AVX2 path here; Q8_K for the K-quants), per row hashed as dsmoe holds them: per
  // 32-block the f32 scale (Q8_0: the fp16 decoded) then the 32 int8 values (zeros where the scale is 0).
  struct ActRef {
    ggml_type type;
    const char* name;
  };
  for (const ActRef a : {ActRef{GGML_TYPE_Q8_0, "ACT_Q8_0"}, ActRef{GGML_TYPE_Q8_K, "ACT_Q8_K"}}) {
    const size_t row_bytes = ggml_row_size(a.type, kRowLength);
    std::vector<uint8_t> q(row_bytes);
    Fnv1a hash;
    for (int r = 0; r < kRowCount; ++r) {
      make_row(r, x.data());
      ggml_get_type_traits_cpu(a.type)->from_float(x.data(), q.data(), kRowLength);
      for (int b = 0; b < kRowLength / 32; ++b) {
        float d;
        const int8_t* qs;
        if (a.type == GGML_TYPE_Q8_0) {
          const block_q8_0& blk = reinterpret_cast<const block_q8_0*>(q.data())[b];
          d = ggml_fp16_to_fp32(blk.d);
          qs = blk.qs;
        } else {
          const block_q8_K& blk = reinterpret_cast<const block_q8_K*>(q.data())[b / 8];
          d = blk.d;
          qs = blk.qs + 32 * (b % 8);
        }
        // A block with scale 0 contributes 0 whatever its ints: hashed with zeros (ggml's x86 Q8_0 writes
        // saturated -128s where 127/amax overflows, amax < 127/FLT_MAX).
        static const int8_t kZeros[32] = {};
        hash.add(&d, sizeof d);
        hash.add(d == 0.0f ? kZeros : qs, 32);
      }
      if ((r + 1) % kChunkRows == 0) {
        print_hash(a.name, "quant", r / kChunkRows, hash);
        hash = Fnv1a();
      }
    }
  }
  ggml_free(ctx);
  return failures == 0 ? 0 : 1;
}
