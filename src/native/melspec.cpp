#include "melspec.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "fft.hpp"

namespace mvrt {

namespace {

constexpr double kPi = 3.14159265358979323846264338327950288;
constexpr double kPowerFloor = 1e-10;

// Nonzero span [begin, end) of each mel row, with its weights widened to double.
struct SparseMelbank {
    std::vector<std::size_t> begin, end;
    std::vector<double> weights;  // row-major, n_mels x n_bins (zeros outside the span are unused)
    std::size_t n_bins = 0;
};

SparseMelbank make_sparse(const float* melbank, std::size_t n_mels, std::size_t n_bins) {
    SparseMelbank bank;
    bank.n_bins = n_bins;
    bank.begin.assign(n_mels, 0);
    bank.end.assign(n_mels, 0);
    bank.weights.assign(melbank, melbank + n_mels * n_bins);
    for (std::size_t m = 0; m < n_mels; ++m) {
        const float* row = melbank + m * n_bins;
        std::size_t b = 0, e = n_bins;
        while (b < n_bins && row[b] == 0.0f) ++b;
        while (e > b && row[e - 1] == 0.0f) --e;
        bank.begin[m] = b;
        bank.end[m] = e;
    }
    return bank;
}

// Per-thread scratch and the read-only plan shared by all threads.
struct Plan {
    const float* samples;
    MelSpecShape shape;
    RealFft fft;
    std::vector<double> window;  // periodic Hann, n_fft
    SparseMelbank bank;
    float* out;
};

void compute_frames(const Plan& plan, std::size_t first, std::size_t last) {
    const std::size_t n = plan.shape.n_fft, h = n / 2, bins = plan.fft.bins();
    const std::size_t frames = plan.shape.frames(), n_mels = plan.shape.n_mels;
    const auto& perm = plan.fft.half().bit_reverse();
    std::vector<double> frame(n), zr(h), zi(h), xr(bins), xi(bins), power(bins);
    const long long total = static_cast<long long>(plan.shape.n_samples);
    for (std::size_t t = first; t < last; ++t) {
        // Centred frame: samples [t*hop - n/2, t*hop + n/2), zeros outside the signal.
        const long long start = static_cast<long long>(t * plan.shape.hop) - static_cast<long long>(h);
        const long long lo = std::max(0LL, -start), hi = std::min<long long>(n, total - start);
        std::fill(frame.begin(), frame.end(), 0.0);
        for (long long i = lo; i < hi; ++i) frame[i] = static_cast<double>(plan.samples[start + i]) * plan.window[i];
        for (std::size_t j = 0; j < h; ++j) {
            zr[perm[j]] = frame[2 * j];
            zi[perm[j]] = frame[2 * j + 1];
        }
        plan.fft.transform_packed(zr.data(), zi.data(), xr.data(), xi.data());
        for (std::size_t k = 0; k < bins; ++k) power[k] = xr[k] * xr[k] + xi[k] * xi[k];
        for (std::size_t m = 0; m < n_mels; ++m) {
            const double* w = plan.bank.weights.data() + m * bins;
            double p = 0.0, re = 0.0, im = 0.0;
            for (std::size_t k = plan.bank.begin[m]; k < plan.bank.end[m]; ++k) {
                p += w[k] * power[k];
                re += w[k] * xr[k];
                im += w[k] * xi[k];
            }
            plan.out[m * frames + t] = static_cast<float>(10.0 * std::log10(std::max(p, kPowerFloor)));
            // "+ 0.0" turns -0 into +0 so that an all-zero band has phase 0, never +-pi.
            plan.out[(n_mels + m) * frames + t] = static_cast<float>(std::atan2(im + 0.0, re + 0.0));
        }
    }
}

}  // namespace

void validate(const MelSpecShape& shape) {
    if (shape.n_samples == 0) throw std::invalid_argument("log_mel_phase: the signal is empty");
    if (shape.n_fft < 2 || !is_power_of_two(shape.n_fft)) {
        throw std::invalid_argument("log_mel_phase: n_fft must be a power of two >= 2, got " +
                                    std::to_string(shape.n_fft));
    }
    if (shape.hop == 0) throw std::invalid_argument("log_mel_phase: hop must be >= 1");
    if (shape.n_mels == 0) throw std::invalid_argument("log_mel_phase: the mel bank has no rows");
}

void log_mel_phase(const float* samples, const float* melbank, const MelSpecShape& shape,
                   std::size_t threads, float* out) {
    validate(shape);
    const std::size_t n = shape.n_fft, bins = n / 2 + 1, frames = shape.frames();
    Plan plan{samples, shape, RealFft(n), std::vector<double>(n), make_sparse(melbank, shape.n_mels, bins), out};
    for (std::size_t i = 0; i < n; ++i) {
        plan.window[i] = 0.5 - 0.5 * std::cos(2.0 * kPi * static_cast<double>(i) / static_cast<double>(n));
    }
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    threads = std::min(threads, frames);
    std::vector<std::thread> workers;
    const std::size_t per = frames / threads, extra = frames % threads;
    std::size_t first = 0;
    for (std::size_t w = 0; w < threads; ++w) {
        const std::size_t last = first + per + (w < extra ? 1 : 0);
        if (w + 1 == threads) {
            compute_frames(plan, first, last);  // the calling thread takes the last block
        } else {
            try {
                workers.emplace_back(compute_frames, std::cref(plan), first, last);
            } catch (const std::system_error&) {
                compute_frames(plan, first, last);  // no thread available: do it here
            }
        }
        first = last;
    }
    for (auto& worker : workers) worker.join();
}

}  // namespace mvrt
