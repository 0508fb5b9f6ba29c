// Winograd F(2x2, 3x3) convolution for XLA CPU, with the tile transforms inside the matmul's blocks.
//
// y[n, 2i+a, 2j+b, k] = sum_{u,v,c} xp[n, 2i+a+u, 2j+b+v, c] w[u, v, c, k]   (valid 3x3 convolution, NHWC)
//
// Lavin & Gray (CVPR 2016): each 2x2 output tile is Y = A^T [sum_c U_c . V_c] A with V = B^T d B the 4x4 input
// tile's transform and U = G g G^T the kernel's, so the 36 multiplications of a tile and channel pair become
// 16: 16 matmuls (tiles x C_in) @ (C_in x C_out), one per component s = 4 * row + column of the 4x4 transforms.
// B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], A^T = [1 1 1 0; 0 1 -1 -1].
//
// XLA writes the transformed input to memory and reads it back for the matmuls (and the matmuls' output for the
// output transform); here a block of tiles is transformed into a packed buffer that stays in cache while the
// matmuls of that block run, and their 16 products are transformed back to output pixels straight away.
//
// Operands: xp (..., N, 2T+2, 2S+2, C) float32, the input already padded to whole tiles; u (..., 16, K/P, C, P),
// the transformed kernel packed in panels of P = kCols output channels (K a multiple of P; TransformKernel builds it).
// Result: y (..., N, 2T, 2S, K). Leading dimensions (vmap) are flattened; u's must be 1 or match xp's.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// One register block, two instruction sets: Vec is a vector of kLanes floats.
#ifdef __AVX512F__
using Vec = __m512;
constexpr int64_t kLanes = 16, kRows = 8;  // the register block: 8 tiles x 32 output channels (16 accumulators)
inline Vec Load(const float* p) { return _mm512_loadu_ps(p); }
inline void Store(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline Vec Zero() { return _mm512_setzero_ps(); }
inline Vec Broadcast(float x) { return _mm512_set1_ps(x); }
inline Vec MultiplyAdd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
#else
using Vec = __m256;
constexpr int64_t kLanes = 8, kRows = 6;  // the register block: 6 tiles x 16 output channels (12 accumulators)
inline Vec Load(const float* p) { return _mm256_loadu_ps(p); }
inline void Store(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline Vec Zero() { return _mm256_setzero_ps(); }
inline Vec Broadcast(float x) { return _mm256_set1_ps(x); }
inline Vec MultiplyAdd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
#endif
constexpr int64_t kVectors = 2, kCols = kVectors * kLanes;  // output channels per panel
constexpr int64_t kDepth = 1024;  // input channels per pass over the accumulators
constexpr int64_t kBlockBytes = 512 << 10;  // of one component's packed tiles: kept in L2 across output panels

// acc (kRows x kCols, row stride ldc) (+)= a (depth x kRows, packed) @ b (depth x kCols, packed)
inline void MicroKernel(int64_t depth, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  Vec acc[kRows][kVectors];
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVectors; ++v) acc[r][v] = accumulate ? Load(c + r * ldc + v * kLanes) : Zero();
  for (int64_t k = 0; k < depth; ++k) {
    Vec columns[kVectors];
    for (int v = 0; v < kVectors; ++v) columns[v] = Load(b + v * kLanes);
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      const Vec x = Broadcast(a[r]);
      for (int v = 0; v < kVectors; ++v) acc[r][v] = MultiplyAdd(x, columns[v], acc[r][v]);
    }
    a += kRows;
    b += kCols;
  }
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVectors; ++v) Store(c + r * ldc + v * kLanes, acc[r][v]);
}

struct Geometry {
  int64_t images, rows, cols, in_channels, out_channels;  // rows, cols: of tiles
  int64_t images_per_kernel;  // images sharing one transformed kernel (all of them unless u is batched)
  int64_t Tiles() const { return images * rows * cols; }
};

std::vector<float>& Scratch(int which, size_t size) {
  thread_local std::vector<float> buffers[2];  // kept between calls: no page faults on every step
  if (buffers[which].size() < size) buffers[which].resize(size);
  return buffers[which];
}

// The 4x4 input transform B^T d B of 8 channels of one tile, d[a][b] pointing at row a, column b of the tile.
inline void InputTransform8(const float* const d[4][4], int64_t c, __m256 t[16]) {
  __m256 e[4][4];
  for (int b = 0; b < 4; ++b) {
    const __m256 d0 = _mm256_loadu_ps(d[0][b] + c), d1 = _mm256_loadu_ps(d[1][b] + c);
    const __m256 d2 = _mm256_loadu_ps(d[2][b] + c), d3 = _mm256_loadu_ps(d[3][b] + c);
    e[0][b] = _mm256_sub_ps(d0, d2), e[1][b] = _mm256_add_ps(d1, d2);
    e[2][b] = _mm256_sub_ps(d2, d1), e[3][b] = _mm256_sub_ps(d1, d3);
  }
  for (int a = 0; a < 4; ++a) {
    t[4 * a + 0] = _mm256_sub_ps(e[a][0], e[a][2]), t[4 * a + 1] = _mm256_add_ps(e[a][1], e[a][2]);
    t[4 * a + 2] = _mm256_sub_ps(e[a][2], e[a][1]), t[4 * a + 3] = _mm256_sub_ps(e[a][1], e[a][3]);
  }
}

// x[r][l] -> x[l][r] for 8 vectors of 8 floats.
inline void Transpose8x8(__m256 x[8]) {
  __m256 a[8], b[8];
  for (int i = 0; i < 8; i += 2) a[i] = _mm256_unpacklo_ps(x[i], x[i + 1]), a[i + 1] = _mm256_unpackhi_ps(x[i], x[i + 1]);
  for (int i = 0; i < 8; i += 4)
    for (int k = 0; k < 2; ++k) {
      b[i + k] = _mm256_shuffle_ps(a[i + k], a[i + 2 + k], _MM_SHUFFLE(1, 0, 1, 0));
      b[i + 2 + k] = _mm256_shuffle_ps(a[i + k], a[i + 2 + k], _MM_SHUFFLE(3, 2, 3, 2));
    }
  // b[0] = rows 0-3 column 0 | (same, upper half) ... : b[0] c0, b[2] c1, b[1] c2, b[3] c3 (per 128-bit half)
  const int order[4] = {0, 2, 1, 3};
  for (int k = 0; k < 4; ++k) {
    x[k] = _mm256_permute2f128_ps(b[order[k]], b[4 + order[k]], 0x20);
    x[k + 4] = _mm256_permute2f128_ps(b[order[k]], b[4 + order[k]], 0x31);
  }
}

// Tiles [first, first + count) (all sharing one kernel), output channels [k0, k1) in panels of kCols.
void Block(const Geometry& g, const float* xp, const float* u, float* y, int64_t first, int64_t count, int64_t k0,
           int64_t k1) {
  const int64_t c_in = g.in_channels, panels = (count + kRows - 1) / kRows, padded = panels * kRows;
  const int64_t width = k1 - k0, in_w = 2 * g.cols + 2, in_h = 2 * g.rows + 2;
  float* v = Scratch(0, 16 * padded * c_in).data();   // v[s][panel][c][row]: the matmuls' left operands, packed
  float* m = Scratch(1, 16 * padded * width).data();  // products m[s][tile][k]
  // Each panel of kRows tiles, 8 channels at a time: the 16 transforms of every tile, then per component an 8x8
  // transpose (tiles x channels -> channels x tiles) into the packed layout, whole rows at a time.
  alignas(32) float t[16][8][8];  // t[s][tile row][channel]
  std::memset(t, 0, sizeof(t));
  const __m256i first_rows = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, kRows > 6 ? -1 : 0, kRows > 7 ? -1 : 0);
  for (int64_t panel = 0; panel < panels; ++panel) {
    const int64_t rows = std::min(kRows, count - panel * kRows);
    const float* d[kRows][4][4];
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t tile = first + panel * kRows + r, n = tile / (g.rows * g.cols), i = tile / g.cols % g.rows;
      const int64_t j = tile % g.cols;
      for (int a = 0; a < 4; ++a)
        for (int b = 0; b < 4; ++b) d[r][a][b] = xp + ((n * in_h + 2 * i + a) * in_w + 2 * j + b) * c_in;
    }
    if (rows < kRows) std::memset(t, 0, sizeof(t));  // the missing tiles of the last panel stay zero
    for (int64_t c = 0; c < c_in; c += 8) {
      const int64_t lanes = std::min<int64_t>(8, c_in - c);
      for (int64_t r = 0; r < rows; ++r) {
        __m256 tv[16];
        if (lanes == 8) {
          InputTransform8(d[r], c, tv);
        } else {  // the last channels: through a zero-padded copy
          alignas(32) float tail[4][4][8] = {};
          const float* td[4][4];
          for (int a = 0; a < 4; ++a)
            for (int b = 0; b < 4; ++b) {
              std::memcpy(tail[a][b], d[r][a][b] + c, lanes * sizeof(float));
              td[a][b] = tail[a][b];
            }
          InputTransform8(td, 0, tv);
        }
        for (int q = 0; q < 16; ++q) _mm256_store_ps(t[q][r], tv[q]);
      }
      for (int q = 0; q < 16; ++q) {
        __m256 x[8];
        for (int r = 0; r < 8; ++r) x[r] = _mm256_load_ps(t[q][r]);
        Transpose8x8(x);
        float* dst = v + ((q * panels + panel) * c_in + c) * kRows;
        for (int64_t l = 0; l < lanes; ++l) {
          if (kRows == 8) _mm256_storeu_ps(dst + l * kRows, x[l]);
          else _mm256_maskstore_ps(dst + l * kRows, first_rows, x[l]);
        }
      }
    }
  }
  const int64_t kernel_panels = g.out_channels / kCols;
  for (int64_t c0 = 0; c0 < c_in; c0 += kDepth) {
    const int64_t depth = std::min(kDepth, c_in - c0);
    for (int64_t s = 0; s < 16; ++s)
      for (int64_t k = k0; k < k1; k += kCols) {
        const float* b = u + ((s * kernel_panels + k / kCols) * c_in + c0) * kCols;
        for (int64_t panel = 0; panel < panels; ++panel)
          MicroKernel(depth, v + ((s * panels + panel) * c_in + c0) * kRows, b,
                      m + (s * padded + panel * kRows) * width + (k - k0), width, c0 > 0);
      }
  }
  const int64_t stride = padded * width;
  for (int64_t p = 0; p < count; ++p) {
    const int64_t tile = first + p, n = tile / (g.rows * g.cols), i = tile / g.cols % g.rows, j = tile % g.cols;
    float* out[2][2];
    for (int a = 0; a < 2; ++a)
      for (int b = 0; b < 2; ++b)
        out[a][b] = y + ((n * 2 * g.rows + 2 * i + a) * 2 * g.cols + 2 * j + b) * g.out_channels + k0;
    const float* q = m + p * width;
    for (int64_t k = 0; k < width; k += 8) {
      __m256 r[2][4];  // A^T M (over rows), then (A^T M) A (over columns)
      for (int b = 0; b < 4; ++b) {
        const __m256 m0 = _mm256_loadu_ps(q + b * stride + k), m1 = _mm256_loadu_ps(q + (4 + b) * stride + k);
        const __m256 m2 = _mm256_loadu_ps(q + (8 + b) * stride + k), m3 = _mm256_loadu_ps(q + (12 + b) * stride + k);
        r[0][b] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2), r[1][b] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
      }
      for (int a = 0; a < 2; ++a) {
        _mm256_storeu_ps(out[a][0] + k, _mm256_add_ps(_mm256_add_ps(r[a][0], r[a][1]), r[a][2]));
        _mm256_storeu_ps(out[a][1] + k, _mm256_sub_ps(_mm256_sub_ps(r[a][1], r[a][2]), r[a][3]));
      }
    }
  }
}

struct Work {
  Geometry g;
  const float *xp, *u;
  float* y;
  int64_t blocks_per_group, block_tiles, splits, split_width, items;
  std::atomic<int64_t> next{0}, done{0};
  std::mutex mutex;
  std::condition_variable finished;

  void Run(int64_t item) {
    const int64_t split = item % splits, block = item / splits;
    const int64_t group = block / blocks_per_group, tiles_per_group = g.images_per_kernel * g.rows * g.cols;
    const int64_t first = group * tiles_per_group + (block % blocks_per_group) * block_tiles;
    const int64_t count = std::min(block_tiles, (group + 1) * tiles_per_group - first);
    const int64_t k0 = split * split_width, k1 = std::min(g.out_channels, k0 + split_width);
    if (count > 0 && k1 > k0)
      Block(g, xp, u + group * 16 * g.in_channels * g.out_channels, y, first, count, k0, k1);
  }
  void Drain() {  // take items until none is left; the last to finish wakes the caller
    for (int64_t item; (item = next.fetch_add(1)) < items;) {
      Run(item);
      if (done.fetch_add(1) + 1 == items) {
        std::lock_guard<std::mutex> lock(mutex);
        finished.notify_all();
      }
    }
  }
};

ffi::Error Winograd(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> xp, ffi::Buffer<ffi::F32> u,
                    ffi::ResultBuffer<ffi::F32> y) {
  const auto xd = xp.dimensions(), ud = u.dimensions();
  if (xd.size() < 4 || ud.size() < 4 || ud.size() != xd.size())
    return ffi::Error::InvalidArgument("winograd: xp must be (..., N, H, W, C) and u (..., 16, K/P, C, P)");
  const int64_t rank = xd.size();
  Geometry g;
  g.images = 1;
  for (int64_t d = 0; d < rank - 3; ++d) g.images *= xd[d];
  int64_t kernels = 1;
  for (int64_t d = 0; d < rank - 4; ++d) kernels *= ud[d];
  g.rows = (xd[rank - 3] - 2) / 2, g.cols = (xd[rank - 2] - 2) / 2, g.in_channels = xd[rank - 1];
  g.out_channels = ud[rank - 3] * kCols;
  if (ud[rank - 4] != 16 || ud[rank - 2] != g.in_channels || ud[rank - 1] != kCols || xd[rank - 3] % 2 ||
      xd[rank - 2] % 2 || g.rows < 1 || g.cols < 1)
    return ffi::Error::InvalidArgument("winograd: operand shapes do not match (..., 2T+2, 2S+2, C), (..., 16, K/P, C, P)");
  if (kernels != 1 && kernels * xd[rank - 4] != g.images)
    return ffi::Error::InvalidArgument("winograd: batched kernels must match the input's leading dimensions");
  g.images_per_kernel = g.images / kernels;

  auto work = std::make_shared<Work>();
  work->g = g;
  work->xp = xp.typed_data(), work->u = u.typed_data(), work->y = y->typed_data();
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t group_tiles = g.images_per_kernel * g.rows * g.cols;
  const int64_t block_tiles = std::clamp<int64_t>(kBlockBytes / 4 / g.in_channels / kRows * kRows, 48, 512);
  int64_t blocks = (group_tiles + block_tiles - 1) / block_tiles;
  if (kernels * blocks < threads) blocks = std::min(group_tiles, (threads + kernels - 1) / kernels);
  else blocks = (blocks + threads - 1) / threads * threads;  // even shares for the threads
  work->block_tiles = (group_tiles + blocks - 1) / blocks;
  work->blocks_per_group = (group_tiles + work->block_tiles - 1) / work->block_tiles;
  const int64_t panels = g.out_channels / kCols, all_blocks = kernels * work->blocks_per_group;
  work->splits = all_blocks >= threads ? 1 : std::min(panels, (threads + all_blocks - 1) / all_blocks);
  work->split_width = (panels + work->splits - 1) / work->splits * kCols;
  work->items = all_blocks * work->splits;
  for (int64_t h = 1; h < std::min(threads, work->items); ++h) pool.Schedule([work] { work->Drain(); });
  work->Drain();
  std::unique_lock<std::mutex> lock(work->mutex);
  work->finished.wait(lock, [&] { return work->done.load() == work->items; });
  return ffi::Error::Success();
}


// u (..., 16, K/P, C, P) = G g G^T of every tap set g = w[:, :, c, k] (w: (..., 3, 3, C, K)), packed in panels of P
// output channels, zero beyond K. With flip, the kernel of the input gradient instead: w[2-i, 2-j, k, c], i.e.
// C and K swap roles. G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1].
ffi::Error TransformKernel(ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> u, bool flip) {
  const auto wd = w.dimensions(), ud = u->dimensions();
  const int64_t rank = wd.size();
  if (rank < 4 || ud.size() != wd.size() || wd[rank - 4] != 3 || wd[rank - 3] != 3)
    return ffi::Error::InvalidArgument("winograd kernel: w must be (..., 3, 3, C, K)");
  const int64_t a = wd[rank - 2], b = wd[rank - 1];  // w's input and output channels
  const int64_t c_in = flip ? b : a, c_out = flip ? a : b, panels = ud[rank - 3];
  if (ud[rank - 4] != 16 || ud[rank - 2] != c_in || ud[rank - 1] != kCols || panels * kCols < c_out)
    return ffi::Error::InvalidArgument("winograd kernel: result must be (..., 16, ceil(K/P), C, P)");
  int64_t kernels = 1;
  for (int64_t d = 0; d < rank - 4; ++d) kernels *= wd[d];
  const float* src = w.typed_data();
  float* dst = u->typed_data();
  const int64_t per_u = 16 * panels * c_in * kCols;
  std::fill(dst, dst + kernels * per_u, 0.f);
  // G g G^T of 8 output channels (no flip: contiguous in w) or 8 input channels (flip: contiguous in w) at once.
  auto transform = [](const __m256 g[3][3], __m256 t[16]) {
    const __m256 half = _mm256_set1_ps(0.5f);
    __m256 e[4][3];
    for (int j = 0; j < 3; ++j) {
      e[0][j] = g[0][j], e[3][j] = g[2][j];
      e[1][j] = _mm256_mul_ps(half, _mm256_add_ps(_mm256_add_ps(g[0][j], g[1][j]), g[2][j]));
      e[2][j] = _mm256_mul_ps(half, _mm256_add_ps(_mm256_sub_ps(g[0][j], g[1][j]), g[2][j]));
    }
    for (int i = 0; i < 4; ++i) {
      t[4 * i + 0] = e[i][0], t[4 * i + 3] = e[i][2];
      t[4 * i + 1] = _mm256_mul_ps(half, _mm256_add_ps(_mm256_add_ps(e[i][0], e[i][1]), e[i][2]));
      t[4 * i + 2] = _mm256_mul_ps(half, _mm256_add_ps(_mm256_sub_ps(e[i][0], e[i][1]), e[i][2]));
    }
  };
  const int64_t inner = flip ? c_in : c_out;  // the channel axis contiguous in w
  for (int64_t n = 0; n < kernels; ++n, src += 9 * a * b, dst += per_u)
    for (int64_t outer = 0; outer < (flip ? c_out : c_in); ++outer)
      for (int64_t x = 0; x < inner; x += 8) {
        const int64_t lanes = std::min<int64_t>(8, inner - x);
        __m256 g[3][3], t[16];
        for (int i = 0; i < 3; ++i)
          for (int j = 0; j < 3; ++j) {
            const float* p = flip ? src + ((2 - i) * 3 + 2 - j) * a * b + outer * b + x
                                  : src + (i * 3 + j) * a * b + outer * b + x;
            alignas(32) float tail[8] = {};
            if (lanes < 8) std::memcpy(tail, p, lanes * sizeof(float)), p = tail;
            g[i][j] = _mm256_loadu_ps(p);
          }
        transform(g, t);
        for (int s = 0; s < 16; ++s) {
          alignas(32) float values[8];
          _mm256_store_ps(values, t[s]);
          if (!flip && lanes == 8 && x % kCols + 8 <= kCols) {  // 8 output channels inside one panel
            _mm256_storeu_ps(dst + ((s * panels + x / kCols) * c_in + outer) * kCols + x % kCols, t[s]);
            continue;
          }
          for (int64_t l = 0; l < lanes; ++l) {
            const int64_t c = flip ? x + l : outer, k = flip ? outer : x + l;
            dst[((s * panels + k / kCols) * c_in + c) * kCols + k % kCols] = values[l];
          }
        }
      }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxinvWinograd, Winograd,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxinvWinogradKernel, TransformKernel,
                              ffi::Ffi::Bind().Arg<ffi::Buffer<ffi::F32>>().Ret<ffi::Buffer<ffi::F32>>().Attr<bool>("flip"));

// The output channels per packed kernel panel this build uses (32 with AVX-512, else 16).
extern "C" int64_t JaxinvWinogradPanel() { return kCols; }
