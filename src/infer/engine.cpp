#include "infer/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <omp.h>

#include "core/attend.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/ops.h"
#include "core/profile.h"
#include "core/vecmath.h"
#include "model/routing.h"

namespace dsmoe {

// ---- KV cache ----

size_t KvCache::bytes_for(const ModelConfig& c, int64_t cap, QuantType type) {
  return 2 * static_cast<size_t>(c.num_hidden_layers) * c.num_key_value_heads * cap *
         quant_row_bytes(type, c.head_dim());
}

void KvCache::init(const ModelConfig& c, int64_t cap, QuantType t) {
  check(t == QuantType::F32 || t == QuantType::F16, "KV cache type must be f32 or f16, not {}", quant_type_name(t));
  type = t;
  capacity = cap;
  length = 0;
  row_elems = c.head_dim();
  const size_t per_layer = static_cast<size_t>(c.num_key_value_heads) * cap * row_bytes();
  k.assign(static_cast<size_t>(c.num_hidden_layers), std::vector<uint8_t>(per_layer));
  v.assign(static_cast<size_t>(c.num_hidden_layers), std::vector<uint8_t>(per_layer));
}

size_t KvCache::bytes() const {
  size_t total = 0;
  for (size_t l = 0; l < k.size(); ++l) total += k[l].size() + v[l].size();
  return total;
}

// ---- session ----

namespace {
constexpr int64_t kQueryBlock = 64;  // prefill attention: query rows per causal block

// body(i) for i in [0, count): over the threads when `parallel` (prefill), else on the calling thread. Not an
// OpenMP `if` clause: a region that runs on one thread still re-forms the team and puts the idle threads to sleep
// (measured: 5.9 ms per token on bench-infer, half the decode time).
template <typename Body>
void for_each_index(int64_t count, bool parallel, bool dynamic, Body&& body) {
  if (!parallel) {
    for (int64_t i = 0; i < count; ++i) body(i);
  } else if (dynamic) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < count; ++i) body(i);
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; ++i) body(i);
  }
}

// g = silu(g) * u over `count` elements, in chunks over the threads when there are many (prefill).
void swiglu_forward_parallel(float* g, const float* u, int64_t count) {
  constexpr int64_t kChunk = 16384;
  for_each_index((count + kChunk - 1) / kChunk, count > kChunk, false, [&](int64_t c) {
    const int64_t i0 = c * kChunk, m = std::min(kChunk, count - i0);
    swiglu_forward(g + i0, u + i0, g + i0, m);
  });
}

// h += y, then xn = rmsnorm(h) * w, rows in parallel when there are several (prefill).
void residual_add_norm(float* h, const float* y, const float* w, float eps, float* xn, float* rstd, int64_t n,
                       int64_t d) {
  for_each_index(n, n > 1, false, [&](int64_t i) {
    if (y != nullptr)
      for (int64_t j = 0; j < d; ++j) h[i * d + j] += y[i * d + j];
    if (w != nullptr) rmsnorm_forward(h + i * d, w, eps, xn + i * d, rstd + i, 1, d);
  });
}
}  // namespace

void KvCache::truncate(int64_t len) {
  check(len >= 0 && len <= length, "cannot truncate a cache of {} positions to {}", length, len);
  length = len;
}

// ---- engine ----

Engine::Engine(const InferModel& model, int64_t max_positions) : model_(model), max_positions_(max_positions) {
  const ModelConfig& c = model_.config;
  check(max_positions > 0 && max_positions <= c.max_position_embeddings,
        "context {} must be in [1, max_position_embeddings = {}]", max_positions, c.max_position_embeddings);
  rope_tables_build(rope_, max_positions, c.head_dim(), c.rope_theta);
}

void Engine::rope(float* x, int64_t pos) const {
  const int64_t hd = model_.config.head_dim();
  const float* cs = rope_.cos.data() + pos * hd / 2;
  const float* sn = rope_.sin.data() + pos * hd / 2;
  if (model_.rope_adjacent_pairs)
    rope_rotate_pairs(x, hd, cs, sn);
  else
    rope_rotate(x, hd, cs, sn, 1.0f);
}

// y[N,d] = Attention(x[N,d]) for the new positions of every sequence, reading and extending each one's cache.
void Engine::attention(int64_t layer, const SeqBatch* seqs, size_t count, const float* x, int64_t N, float* y) {
  const ModelConfig& c = model_.config;
  const InferLayer& w = model_.layers[layer];
  const int64_t H = c.num_attention_heads, KVH = c.num_key_value_heads, hd = c.head_dim();
  const int64_t G = H / KVH, qd = H * hd, kvd = KVH * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  float* q = ws_.get("inf.q", N * qd);
  float* kn = ws_.get("inf.k", N * kvd);
  float* vn = ws_.get("inf.v", N * kvd);
  float* out = ws_.get("inf.attn", N * qd);
  {
    const QProduct jobs[] = {product(w.wq, x, q, N), product(w.wk, x, kn, N), product(w.wv, x, vn, N)};
    qmatmul_many(jobs, 3);
  }
  // RoPE at absolute positions, and append K, V to each sequence's cache in its type.
  for_each_index(N, N > 1, false, [&](int64_t i) {
    KvCache& cache = *seqs[row_seq_[i]].cache;
    const int64_t pos = row_pos_[i];
    for (int64_t h = 0; h < H; ++h) rope(q + i * qd + h * hd, pos);
    for (int64_t h = 0; h < KVH; ++h) {
      rope(kn + i * kvd + h * hd, pos);
      quantize_row(cache.type, kn + i * kvd + h * hd, cache.k_row(layer, h, pos), hd);
      quantize_row(cache.type, vn + i * kvd + h * hd, cache.v_row(layer, h, pos), hd);
    }
  });
  const int n_threads = omp_get_max_threads();
  // Decoding sequences (one new token each): per (sequence, head), scores over the cache by dot products, then a
  // weighted sum of V rows; all of them in one parallel region.
  std::vector<int64_t> decode_rows, first_row(count);
  int64_t max_total = 0;
  for (size_t s = 0, row = 0; s < count; row += seqs[s].n, ++s) {
    first_row[s] = static_cast<int64_t>(row);
    if (seqs[s].n == 1) {
      decode_rows.push_back(static_cast<int64_t>(row));
      max_total = std::max(max_total, seqs[s].cache->length + 1);
    }
  }
  if (!decode_rows.empty()) {
    const int64_t D = static_cast<int64_t>(decode_rows.size());
    float* scores_all = ws_.get("inf.scores", static_cast<size_t>(n_threads) * max_total);
#pragma omp parallel for schedule(static)
    for (int64_t item = 0; item < D * H; ++item) {
      const int64_t i = decode_rows[item / H], h = item % H;
      const KvCache& cache = *seqs[row_seq_[i]].cache;
      const int64_t total = row_pos_[i] + 1;
      float* scores = scores_all + static_cast<size_t>(omp_get_thread_num()) * max_total;
      attend_decode(cache.type, cache.k_row(layer, h / G, 0), cache.v_row(layer, h / G, 0), total, q + i * qd + h * hd,
                    hd, scale, scores, out + i * qd + h * hd);
    }
  }
  // Prompt chunks (several new tokens): per head, scores [n, total] = Q Kᵀ * scale by GEMM, causal softmax,
  // out = scores V.
  for (size_t s = 0; s < count; ++s) {
    const int64_t n = seqs[s].n;
    if (n == 1) continue;
    const KvCache& cache = *seqs[s].cache;
    const int64_t P = cache.length, total = P + n, row0 = first_row[s];
    const bool f32 = cache.type == QuantType::F32;
    float* scores_all = ws_.get("inf.scores", static_cast<size_t>(n_threads) * std::min(n, kQueryBlock) * total);
    float* kv_all = f32 ? nullptr : ws_.get("inf.kvf32", static_cast<size_t>(n_threads) * 2 * total * hd);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t h = 0; h < H; ++h) {
      const int tid = omp_get_thread_num();
      float* scores = scores_all + static_cast<size_t>(tid) * std::min(n, kQueryBlock) * total;
      const float* kc = reinterpret_cast<const float*>(cache.k_row(layer, h / G, 0));
      const float* vc = reinterpret_cast<const float*>(cache.v_row(layer, h / G, 0));
      if (!f32) {  // widen this head's K and V once; rows are contiguous per head
        float* kf = kv_all + static_cast<size_t>(tid) * 2 * total * hd;
        float* vf = kf + total * hd;
        dequantize_row(cache.type, cache.k_row(layer, h / G, 0), kf, total * hd);
        dequantize_row(cache.type, cache.v_row(layer, h / G, 0), vf, total * hd);
        kc = kf;
        vc = vf;
      }
      // Causal blocks of query rows: block [i0, i1) sees keys [0, P + i1) only, so about half of the masked
      // products are never computed.
      const float* qs = q + row0 * qd;
      float* os = out + row0 * qd;
      for (int64_t i0 = 0; i0 < n; i0 += kQueryBlock) {
        const int64_t i1 = std::min(n, i0 + kQueryBlock), rows = i1 - i0, keys = P + i1;
        gemm(false, true, rows, keys, hd, scale, qs + i0 * qd + h * hd, qd, kc, hd, 0.0f, scores, keys);
        for (int64_t i = i0; i < i1; ++i) {
          float* row = scores + (i - i0) * keys;
          const int64_t visible = P + i + 1;
          const float sum = exp_shift_sum(row, visible, max_of(row, visible));
          scale_in_place(row, visible, 1.0f / sum);
          std::fill(row + visible, row + keys, 0.0f);
        }
        gemm(false, false, rows, hd, keys, 1.0f, scores, keys, vc, hd, 0.0f, os + i0 * qd + h * hd, qd);
      }
    }
  }
  const QProduct wo = product(w.wo, out, y, N);
  qmatmul_many(&wo, 1);
}

// y[n,d] = down(silu(gate x) * up x). `tag` keeps the scratch of concurrent callers apart.
void Engine::swiglu(const QMatrix& gate, const QMatrix& up, const QMatrix& down, const float* x, int64_t n, float* y,
                    const char* tag) {
  const int64_t F = gate.rows;
  float* g = ws_.get(std::string(tag) + ".g", n * F);
  float* u = ws_.get(std::string(tag) + ".u", n * F);
  const QProduct jobs[] = {product(gate, x, g, n), product(up, x, u, n)};
  qmatmul_many(jobs, 2);
  swiglu_forward_parallel(g, u, n * F);
  const QProduct down_job = product(down, g, y, n);
  qmatmul_many(&down_job, 1);
}

// y[n,d] = shared(x) + sum_k w_k expert_k(x): softmax gate, top-k (no capacity: inference is dropless, as HF),
// tokens grouped per expert so each selected expert's weights stream once per step for all rows that chose it.
// Two batches of products (gate and up of every selected expert and the shared ones, then every down), each one
// parallel region over all its weight rows.
void Engine::moe(const InferLayer& w, const float* x, int64_t n, float* y) {
  const ModelConfig& c = model_.config;
  const int64_t d = c.hidden_size, E = c.n_routed_experts, k = c.num_experts_per_tok, Fe = c.moe_intermediate_size;
  float* probs = ws_.get("moe.probs", n * E);
  RoutingPlan plan;
  {
    PROFILE_SCOPE("router");
    const QProduct router = product(w.router, x, probs, n);
    qmatmul_many(&router, 1);
    softmax_rows(probs, n, E);
    plan = routing_plan_build(probs, n, E, k, c.norm_topk_prob, 0.0);
  }
  const int64_t A = plan.rows();
  const bool shared = !w.shared_gate.empty();
  const int64_t Fs = shared ? w.shared_gate.rows : 0;
  float* rows_out = ws_.get("moe.rows_out", A * d);      // [A, d] expert outputs in expert-sorted order
  float* gu = ws_.get("moe.gu", 2 * (A * Fe + n * Fs));  // per expert [gate r x Fe | up r x Fe], then shared
  float* gs = gu + 2 * A * Fe;                           // [gate n x Fs | up n x Fs]
  std::vector<int64_t> chosen;
  for (int64_t e = 0; e < E; ++e)
    if (plan.rows_of(e) > 0) chosen.push_back(e);
  // Each expert's rows of x, gathered (one token: x itself, so that every product shares one quantized input).
  float* xe_all = n == 1 ? nullptr : ws_.get("moe.xe", A * d);
  if (n > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t a = 0; a < A; ++a) std::memcpy(xe_all + a * d, x + plan.row_token[a] * d, d * sizeof(float));
  }
  auto expert_x = [&](int64_t e) { return n == 1 ? x : xe_all + plan.expert_offsets[e] * d; };
  auto expert_g = [&](int64_t e) { return gu + 2 * plan.expert_offsets[e] * Fe; };
  // Profiling times the shared experts in batches of their own (one more parallel region each); otherwise they
  // ride in the routed experts' batches.
  const bool split_shared = profile_table().enabled;
  std::vector<QProduct> jobs, shared_jobs;
  std::vector<QProduct>& sj = split_shared ? shared_jobs : jobs;
  auto run_batch = [&] {
    {
      PROFILE_SCOPE("experts.routed");
      qmatmul_many(jobs.data(), jobs.size());
    }
    if (!shared_jobs.empty()) {
      PROFILE_SCOPE("experts.shared");
      qmatmul_many(shared_jobs.data(), shared_jobs.size());
    }
    jobs.clear();
    shared_jobs.clear();
  };
  for (int64_t e : chosen) {
    const int64_t r = plan.rows_of(e);
    jobs.push_back(product(w.expert_gate[e], expert_x(e), expert_g(e), r));
    jobs.push_back(product(w.expert_up[e], expert_x(e), expert_g(e) + r * Fe, r));
  }
  if (shared) {
    sj.push_back(product(w.shared_gate, x, gs, n));
    sj.push_back(product(w.shared_up, x, gs + n * Fs, n));
  }
  run_batch();
  const int64_t n_chosen = static_cast<int64_t>(chosen.size());
  for_each_index(n_chosen + 1, n > 1, true, [&](int64_t i) {
    if (i < n_chosen) {
      const int64_t e = chosen[i], r = plan.rows_of(e);
      swiglu_forward(expert_g(e), expert_g(e) + r * Fe, expert_g(e), r * Fe);
    } else if (shared) {
      swiglu_forward(gs, gs + n * Fs, gs, n * Fs);
    }
  });
  for (int64_t e : chosen)
    jobs.push_back(product(w.expert_down[e], expert_g(e), rows_out + plan.expert_offsets[e] * d, plan.rows_of(e)));
  if (shared)
    sj.push_back(product(w.shared_down, gs, y, n));
  else
    std::fill(y, y + n * d, 0.0f);
  run_batch();
  // y[t] += sum_j w_tj rows_out[row of (t, j)], tokens in parallel.
  for_each_index(n, n > 1, false, [&](int64_t t) {
    for (int64_t j = 0; j < k; ++j) {
      const int32_t row = plan.slot_row[t * k + j];
      axpy(plan.topk_weight[t * k + j], rows_out + static_cast<int64_t>(row) * d, y + t * d, d);
    }
  });
}

void Engine::run_layers(const SeqBatch* seqs, size_t count, int64_t N, float* h) {
  const ModelConfig& c = model_.config;
  const int64_t d = c.hidden_size;
  float* xn = ws_.get("inf.xn", N * d);
  float* y = ws_.get("inf.y", N * d);
  float* rstd = ws_.get("inf.rstd", N);
  for (int64_t i = 0; i < N; ++i) qmatrix_row_f32(model_.embedding, row_token_[i], h + i * d);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const InferLayer& lw = model_.layers[l];
    residual_add_norm(h, l == 0 ? nullptr : y, lw.attn_norm, c.rms_norm_eps, xn, rstd, N, d);
    {
      PROFILE_SCOPE("attention");
      attention(l, seqs, count, xn, N, y);
    }
    residual_add_norm(h, y, lw.ffn_norm, c.rms_norm_eps, xn, rstd, N, d);
    if (c.is_moe_layer(l)) {
      moe(lw, xn, N, y);
    } else {
      PROFILE_SCOPE("dense_ffn");
      swiglu(lw.mlp_gate, lw.mlp_up, lw.mlp_down, xn, N, y, "dense");
    }
  }
  residual_add_norm(h, y, nullptr, c.rms_norm_eps, xn, rstd, N, d);
  for (size_t s = 0; s < count; ++s) seqs[s].cache->length += seqs[s].n;
}

namespace {
// Checks a batch and returns its row count.
int64_t check_batch(const InferModel& model, int64_t max_positions, const SeqBatch* seqs, size_t count) {
  const int64_t V = model.config.vocab_size;
  int64_t N = 0;
  for (size_t s = 0; s < count; ++s) {
    const SeqBatch& b = seqs[s];
    check(b.cache != nullptr && b.n > 0 && b.tokens != nullptr, "forward: sequence {} has nothing to run", s);
    check(b.cache->length + b.n <= b.cache->capacity, "context full: {} cached + {} new tokens > {}", b.cache->length,
          b.n, b.cache->capacity);
    check(b.cache->capacity <= max_positions, "a cache of {} positions is longer than this engine's {}",
          b.cache->capacity, max_positions);
    for (size_t o = 0; o < s; ++o) check(seqs[o].cache != b.cache, "forward: one cache given twice in a batch");
    for (int64_t i = 0; i < b.n; ++i)
      check(b.tokens[i] >= 0 && b.tokens[i] < V, "token id {} is outside the vocabulary [0, {})", b.tokens[i], V);
    N += b.n;
  }
  check(N > 0, "nothing to run");
  return N;
}
}  // namespace

void Engine::forward(const SeqBatch* seqs, size_t count) {
  const ModelConfig& c = model_.config;
  const int64_t d = c.hidden_size, V = c.vocab_size;
  const int64_t N = check_batch(model_, max_positions_, seqs, count);
  index_rows(seqs, count);
  std::vector<int64_t> last_rows;  // rows whose logits are wanted
  std::vector<float*> wanted;
  for (size_t s = 0, row = 0; s < count; ++s) {
    row += static_cast<size_t>(seqs[s].n);
    if (seqs[s].logits != nullptr) {
      last_rows.push_back(static_cast<int64_t>(row) - 1);
      wanted.push_back(seqs[s].logits);
    }
  }
  float* h = ws_.get("inf.h", N * d);
  run_layers(seqs, count, N, h);
  // Logits only for the last position of the sequences that want them: one product for all of them.
  const int64_t S = static_cast<int64_t>(last_rows.size());
  if (S == 0) return;
  float* xn = ws_.get("inf.xn", S * d);
  float* rstd = ws_.get("inf.rstd", S);
  for (int64_t i = 0; i < S; ++i)
    rmsnorm_forward(h + last_rows[i] * d, model_.final_norm, c.rms_norm_eps, xn + i * d, rstd + i, 1, d);
  PROFILE_SCOPE("lm_head");
  float* logits = S == 1 ? wanted[0] : ws_.get("inf.logits", S * V);
  const QProduct head = product(model_.lm_head, xn, logits, S);
  qmatmul_many(&head, 1);
  if (S > 1)
    for (int64_t i = 0; i < S; ++i) std::memcpy(wanted[i], logits + i * V, V * sizeof(float));
}

void Engine::index_rows(const SeqBatch* seqs, size_t count) {
  row_seq_.clear();
  row_pos_.clear();
  row_token_.clear();
  decode_rows_ = true;
  for (size_t s = 0; s < count; ++s) {
    for (int64_t i = 0; i < seqs[s].n; ++i) {
      row_seq_.push_back(static_cast<int64_t>(s));
      row_pos_.push_back(seqs[s].cache->length + i);
      row_token_.push_back(seqs[s].tokens[i]);
    }
    decode_rows_ = decode_rows_ && seqs[s].n == 1;
  }
}

void Engine::forward_all(KvCache& cache, const int32_t* tokens, int64_t n, std::vector<float>& logits) {
  const ModelConfig& c = model_.config;
  const int64_t d = c.hidden_size;
  const SeqBatch seq{&cache, tokens, n, nullptr};
  check_batch(model_, max_positions_, &seq, 1);
  index_rows(&seq, 1);
  float* h = ws_.get("inf.h", n * d);
  run_layers(&seq, 1, n, h);
  float* xn = ws_.get("inf.xn", n * d);
  float* rstd = ws_.get("inf.rstd", n);
  rmsnorm_forward(h, model_.final_norm, c.rms_norm_eps, xn, rstd, n, d);
  logits.resize(static_cast<size_t>(n * c.vocab_size));
  PROFILE_SCOPE("lm_head");
  const QProduct head = product(model_.lm_head, xn, logits.data(), n);
  qmatmul_many(&head, 1);
}

// ---- session ----

InferenceSession::InferenceSession(const InferModel& model, int64_t capacity, QuantType kv_type)
    : engine_(model, capacity) {
  cache_.init(model.config, capacity, kv_type);
}

InferenceSession::InferenceSession(const Model& model, int64_t capacity, QuantType kv_type)
    : owned_view_(infer_model_view(model)), engine_(*owned_view_, capacity) {
  cache_.init(owned_view_->config, capacity, kv_type);
}

void InferenceSession::truncate(int64_t length) { cache_.truncate(length); }

const std::vector<float>& InferenceSession::forward(const int32_t* tokens, int64_t n) {
  logits_.resize(static_cast<size_t>(model().config.vocab_size));
  const SeqBatch seq{&cache_, tokens, n, logits_.data()};
  engine_.forward(&seq, 1);
  return logits_;
}

void InferenceSession::forward_all(const int32_t* tokens, int64_t n, std::vector<float>& logits) {
  engine_.forward_all(cache_, tokens, n, logits);
}

}  // namespace dsmoe
