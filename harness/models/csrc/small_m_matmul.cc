// Small-M matrix products for XLA:CPU, registered as an XLA FFI handler.
//
// At batch size 1 a decoder scores 1 to 8 token positions per call, so every
// weight product has M = 1..8 rows. XLA:CPU's GEMM paths pack or re-read the
// weight matrix for M > 1, and its M = 1 path runs below the memory
// bandwidth. Here each weight element is read from memory once per call and
// used for all M rows from registers, with software prefetch ahead of the
// stream, so a call costs about (weight bytes / bandwidth) for any M <= 8.
//
// Two layouts:
//   layout 0 ("NN"): y[m, j] = sum_i x[m, i] * w[i, j]   (w is [D, N])
//   layout 1 ("NT"): y[m, j] = sum_i x[m, i] * w[j, i]   (w is [N, D])
// Every output element is accumulated in the same order whatever M is, so a
// row's result does not depend on how many rows are scored with it (the
// speculative loops score 1 and gamma + 1 rows with the same model).
//
// Built by harness/models/cpu_matmul.py with the host's own instruction set
// (-march=native); GCC/Clang vector extensions keep the code portable.

#include <cstdint>
#include <cstring>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX__) || defined(__ARM_NEON)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif

typedef float Vec __attribute__((vector_size(kLanes * 4)));

inline Vec Load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof(Vec));
  return v;
}

inline void Store(float* p, Vec v) { std::memcpy(p, &v, sizeof(Vec)); }

inline float Sum(Vec v) {
  // Pairwise halving: the same order for every call.
  float lanes[kLanes];
  std::memcpy(lanes, &v, sizeof(Vec));
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int i = 0; i < width; ++i) lanes[i] += lanes[i + width];
  }
  return lanes[0];
}

inline void Prefetch(const float* p) { __builtin_prefetch(p, 0, 3); }

// NN: rows of w are streamed IB at a time; y (M x N, small) stays in cache.
constexpr int kRowBlock = 8;
constexpr int kPrefetchBlocks = 2;

template <int M>
void ProductNN(const float* x, int64_t d, const float* w, int64_t n,
               float* y) {
  std::memset(y, 0, sizeof(float) * M * n);
  const int64_t ahead = kPrefetchBlocks * kRowBlock * n;
  int64_t i0 = 0;
  for (; i0 + kRowBlock <= d; i0 += kRowBlock) {
    float xs[kRowBlock][M];
    for (int r = 0; r < kRowBlock; ++r)
      for (int m = 0; m < M; ++m) xs[r][m] = x[m * d + i0 + r];
    const float* rows = w + i0 * n;
    int64_t j = 0;
    for (; j + 2 * kLanes <= n; j += 2 * kLanes) {
      Vec a0[M], a1[M];
      for (int m = 0; m < M; ++m) {
        a0[m] = Load(y + m * n + j);
        a1[m] = Load(y + m * n + j + kLanes);
      }
      for (int r = 0; r < kRowBlock; ++r) {
        const float* p = rows + r * n + j;
        if (i0 + kRowBlock * (kPrefetchBlocks + 1) <= d) {
          Prefetch(p + ahead);
          Prefetch(p + ahead + kLanes);
        }
        const Vec w0 = Load(p), w1 = Load(p + kLanes);
        for (int m = 0; m < M; ++m) {
          a0[m] += w0 * xs[r][m];
          a1[m] += w1 * xs[r][m];
        }
      }
      for (int m = 0; m < M; ++m) {
        Store(y + m * n + j, a0[m]);
        Store(y + m * n + j + kLanes, a1[m]);
      }
    }
    for (; j < n; ++j) {
      for (int m = 0; m < M; ++m) {
        float a = y[m * n + j];
        for (int r = 0; r < kRowBlock; ++r) a += rows[r * n + j] * xs[r][m];
        y[m * n + j] = a;
      }
    }
  }
  for (; i0 < d; ++i0) {
    for (int64_t j = 0; j < n; ++j)
      for (int m = 0; m < M; ++m) y[m * n + j] += w[i0 * n + j] * x[m * d + i0];
  }
}

// NT: R output rows of w at a time, each dotted with the M rows of x.
template <int M, int R>
void ProductNT(const float* x, int64_t d, const float* w, int64_t n,
               float* y) {
  const int64_t ahead = R * d;  // prefetch the next block of R rows
  int64_t j = 0;
  for (; j + R <= n; j += R) {
    const float* rows[R];
    for (int r = 0; r < R; ++r) rows[r] = w + (j + r) * d;
    Vec acc[R][M];
    for (int r = 0; r < R; ++r)
      for (int m = 0; m < M; ++m) acc[r][m] = Vec{};
    int64_t i = 0;
    for (; i + kLanes <= d; i += kLanes) {
      if (j + 2 * R <= n)
        for (int r = 0; r < R; ++r) Prefetch(rows[r] + i + ahead);
      Vec v[R];
      for (int r = 0; r < R; ++r) v[r] = Load(rows[r] + i);
      for (int m = 0; m < M; ++m) {
        const Vec xm = Load(x + m * d + i);
        for (int r = 0; r < R; ++r) acc[r][m] += v[r] * xm;
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int m = 0; m < M; ++m) {
        float s = Sum(acc[r][m]);
        for (int64_t e = i; e < d; ++e) s += rows[r][e] * x[m * d + e];
        y[m * n + j + r] = s;
      }
    }
  }
  for (; j < n; ++j) {
    // The same per-output order as above: lanes, pairwise sum, then the tail.
    const float* row = w + j * d;
    for (int m = 0; m < M; ++m) {
      Vec acc = Vec{};
      int64_t i = 0;
      for (; i + kLanes <= d; i += kLanes) acc += Load(row + i) * Load(x + m * d + i);
      float s = Sum(acc);
      for (; i < d; ++i) s += row[i] * x[m * d + i];
      y[m * n + j] = s;
    }
  }
}

template <int M>
void Product(int64_t layout, const float* x, int64_t d, const float* w,
             int64_t n, float* y) {
  if (layout == 0) {
    ProductNN<M>(x, d, w, n, y);
  } else {
    // Fewer rows at a time for the largest M keeps the accumulators in
    // registers (R x M of them).
    constexpr int R = (M <= 6) ? 4 : 2;
    ProductNT<M, R>(x, d, w, n, y);
  }
}

ffi::Error SmallMMatmulImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                            ffi::ResultBuffer<ffi::F32> y, int64_t layout) {
  const auto xd = x.dimensions();
  const auto wd = w.dimensions();
  if (xd.size() != 2 || wd.size() != 2)
    return ffi::Error::InvalidArgument("small_m_matmul: x and w must be 2-D");
  const int64_t m = xd[0], d = xd[1];
  const int64_t n = (layout == 0) ? wd[1] : wd[0];
  const int64_t wk = (layout == 0) ? wd[0] : wd[1];
  if (wk != d)
    return ffi::Error::InvalidArgument("small_m_matmul: contraction mismatch");
  const float* xp = x.typed_data();
  const float* wp = w.typed_data();
  float* yp = y->typed_data();
  switch (m) {
    case 0: return ffi::Error::Success();
    case 1: Product<1>(layout, xp, d, wp, n, yp); break;
    case 2: Product<2>(layout, xp, d, wp, n, yp); break;
    case 3: Product<3>(layout, xp, d, wp, n, yp); break;
    case 4: Product<4>(layout, xp, d, wp, n, yp); break;
    case 5: Product<5>(layout, xp, d, wp, n, yp); break;
    case 6: Product<6>(layout, xp, d, wp, n, yp); break;
    case 7: Product<7>(layout, xp, d, wp, n, yp); break;
    case 8: Product<8>(layout, xp, d, wp, n, yp); break;
    default:
      return ffi::Error::InvalidArgument("small_m_matmul: M must be <= 8");
  }
  return ffi::Error::Success();
}

// The bandwidth probe of benchmarks/roofline.py: a sum over x with eight
// independent vector accumulators, so that the loads, not the additions,
// set the pace (a streaming read at the rate the cache level holding x
// delivers).
ffi::Error StreamSumImpl(ffi::Buffer<ffi::F32> x,
                         ffi::ResultBuffer<ffi::F32> y) {
  const float* p = x.typed_data();
  const int64_t n = static_cast<int64_t>(x.element_count());
  Vec acc[8] = {};
  int64_t i = 0;
  for (; i + 8 * kLanes <= n; i += 8 * kLanes)
    for (int a = 0; a < 8; ++a) acc[a] += Load(p + i + a * kLanes);
  float s = 0;
  for (int a = 0; a < 8; ++a) s += Sum(acc[a]);
  for (; i < n; ++i) s += p[i];
  y->typed_data()[0] = s;
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(HarnessStreamSum, StreamSumImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(HarnessSmallMMatmul, SmallMMatmulImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("layout"));
