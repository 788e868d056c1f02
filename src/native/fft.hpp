// Radix-2 FFTs written for mvrt: a complex FFT on split (re, im) arrays and a real FFT of
// size n built on the complex FFT of n/2 points plus the standard split post-processing.
// Everything is double precision; twiddles are computed once per plan with std::cos/sin.
#pragma once

#include <cstddef>
#include <vector>

namespace mvrt {

bool is_power_of_two(std::size_t n);

// In-place complex FFT (forward, e^{-2 pi i jk/n}) of a power-of-two size n >= 1.
class ComplexFft {
  public:
    explicit ComplexFft(std::size_t n);
    std::size_t size() const { return n_; }
    // Index j of the input goes to position bit_reverse(j) before `transform_permuted`.
    const std::vector<std::size_t>& bit_reverse() const { return bitrev_; }
    // Transform data already stored in bit-reversed order.
    void transform_permuted(double* re, double* im) const;
    // Transform data in natural order.
    void transform(double* re, double* im) const;

  private:
    std::size_t n_;
    std::vector<std::size_t> bitrev_;
    // Stage with half-length m (1, 2, 4, ...) uses tw_*[m - 1 + j] = e^{-i pi j / m}, j < m.
    std::vector<double> tw_re_, tw_im_;
};

// Real FFT of a power-of-two size n >= 2: n real samples -> n/2 + 1 complex bins.
class RealFft {
  public:
    explicit RealFft(std::size_t n);
    std::size_t size() const { return n_; }
    std::size_t bins() const { return n_ / 2 + 1; }
    const ComplexFft& half() const { return half_; }
    // Scratch zr/zi (n/2 each) must hold the packed input z[j] = x[2j] + i x[2j+1] already
    // permuted by half().bit_reverse(); out_re/out_im receive bins() values.
    void transform_packed(double* zr, double* zi, double* out_re, double* out_im) const;
    // Convenience: x (n samples) -> out (bins() values); allocates scratch.
    void transform(const double* x, double* out_re, double* out_im) const;

  private:
    std::size_t n_;
    ComplexFft half_;
    std::vector<double> post_re_, post_im_;  // e^{-2 pi i k / n}, k <= n/2
};

}  // namespace mvrt
