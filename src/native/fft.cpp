#include "fft.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

namespace mvrt {

namespace {
constexpr double kPi = 3.14159265358979323846264338327950288;

void require_power_of_two(std::size_t n, std::size_t minimum, const char* what) {
    if (n < minimum || !is_power_of_two(n)) {
        throw std::invalid_argument(std::string(what) + " size must be a power of two >= " +
                                    std::to_string(minimum) + ", got " + std::to_string(n));
    }
}

// e^{-2 pi i j / n}; exact at multiples of a quarter turn (e.g. the Nyquist bin stays real).
void unit_root(std::size_t j, std::size_t n, double& re, double& im) {
    j %= n;
    if ((4 * j) % n == 0) {
        static constexpr double kRe[4] = {1.0, 0.0, -1.0, 0.0};
        static constexpr double kIm[4] = {0.0, -1.0, 0.0, 1.0};
        re = kRe[4 * j / n];
        im = kIm[4 * j / n];
        return;
    }
    const double angle = -2.0 * kPi * static_cast<double>(j) / static_cast<double>(n);
    re = std::cos(angle);
    im = std::sin(angle);
}
}  // namespace

bool is_power_of_two(std::size_t n) { return n != 0 && (n & (n - 1)) == 0; }

ComplexFft::ComplexFft(std::size_t n) : n_(n), bitrev_(n), tw_re_(n > 1 ? n - 1 : 0), tw_im_(tw_re_.size()) {
    require_power_of_two(n, 1, "FFT");
    std::size_t bits = 0;
    while ((std::size_t{1} << bits) < n) ++bits;
    for (std::size_t j = 0; j < n; ++j) {
        std::size_t r = 0;
        for (std::size_t b = 0; b < bits; ++b) r |= ((j >> b) & 1u) << (bits - 1 - b);
        bitrev_[j] = r;
    }
    for (std::size_t m = 1; m < n; m <<= 1) {
        for (std::size_t j = 0; j < m; ++j) unit_root(j, 2 * m, tw_re_[m - 1 + j], tw_im_[m - 1 + j]);
    }
}

void ComplexFft::transform(double* re, double* im) const {
    for (std::size_t j = 0; j < n_; ++j) {
        const std::size_t r = bitrev_[j];
        if (j < r) {
            std::swap(re[j], re[r]);
            std::swap(im[j], im[r]);
        }
    }
    transform_permuted(re, im);
}

void ComplexFft::transform_permuted(double* re, double* im) const {
    // First stage (m = 1): twiddle 1.
    for (std::size_t k = 0; k + 1 < n_; k += 2) {
        const double ar = re[k], ai = im[k], br = re[k + 1], bi = im[k + 1];
        re[k] = ar + br;
        im[k] = ai + bi;
        re[k + 1] = ar - br;
        im[k + 1] = ai - bi;
    }
    // Second stage (m = 2): twiddles 1 and -i.
    for (std::size_t k = 0; k + 3 < n_; k += 4) {
        const double ar0 = re[k], ai0 = im[k], br0 = re[k + 2], bi0 = im[k + 2];
        const double ar1 = re[k + 1], ai1 = im[k + 1], br1 = im[k + 3], bi1 = -re[k + 3];
        re[k] = ar0 + br0;
        im[k] = ai0 + bi0;
        re[k + 2] = ar0 - br0;
        im[k + 2] = ai0 - bi0;
        re[k + 1] = ar1 + br1;
        im[k + 1] = ai1 + bi1;
        re[k + 3] = ar1 - br1;
        im[k + 3] = ai1 - bi1;
    }
    // Remaining stages: contiguous butterflies the compiler vectorises.
    for (std::size_t m = 4; m < n_; m <<= 1) {
        const double* __restrict wr = tw_re_.data() + (m - 1);
        const double* __restrict wi = tw_im_.data() + (m - 1);
        for (std::size_t k = 0; k < n_; k += 2 * m) {
            double* __restrict ar = re + k;
            double* __restrict ai = im + k;
            double* __restrict br = re + k + m;
            double* __restrict bi = im + k + m;
            for (std::size_t j = 0; j < m; ++j) {
                const double tr = br[j] * wr[j] - bi[j] * wi[j];
                const double ti = br[j] * wi[j] + bi[j] * wr[j];
                br[j] = ar[j] - tr;
                bi[j] = ai[j] - ti;
                ar[j] += tr;
                ai[j] += ti;
            }
        }
    }
}

RealFft::RealFft(std::size_t n) : n_(n), half_((require_power_of_two(n, 2, "real FFT"), n / 2)),
                                  post_re_(n / 2 + 1), post_im_(n / 2 + 1) {
    for (std::size_t k = 0; k <= n / 2; ++k) unit_root(k, n, post_re_[k], post_im_[k]);
}

void RealFft::transform_packed(double* zr, double* zi, double* out_re, double* out_im) const {
    const std::size_t h = n_ / 2;
    half_.transform_permuted(zr, zi);
    // X[k] = E[k] + w^k O[k] with E = (Z[k] + conj Z[h-k]) / 2, O = -i (Z[k] - conj Z[h-k]) / 2.
    for (std::size_t k = 0; k <= h; ++k) {
        const std::size_t a = (k == h) ? 0 : k;
        const std::size_t b = (k == 0) ? 0 : h - k;
        const double ar = zr[a], ai = zi[a], br = zr[b], bi = -zi[b];
        const double er = 0.5 * (ar + br), ei = 0.5 * (ai + bi);
        const double orr = 0.5 * (ai - bi), oi = -0.5 * (ar - br);
        out_re[k] = er + post_re_[k] * orr - post_im_[k] * oi;
        out_im[k] = ei + post_re_[k] * oi + post_im_[k] * orr;
    }
}

void RealFft::transform(const double* x, double* out_re, double* out_im) const {
    const std::size_t h = n_ / 2;
    std::vector<double> zr(h), zi(h);
    const auto& perm = half_.bit_reverse();
    for (std::size_t j = 0; j < h; ++j) {
        zr[perm[j]] = x[2 * j];
        zi[perm[j]] = x[2 * j + 1];
    }
    transform_packed(zr.data(), zi.data(), out_re, out_im);
}

}  // namespace mvrt
