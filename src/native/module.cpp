// Python bindings of the mvrt native kernels (private module mvrt._native).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <complex>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fft.hpp"
#include "melspec.hpp"

namespace nb = nanobind;

namespace {

using Samples = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Melbank = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using Signal64 = nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

template <typename T, std::size_t Dims>
nb::ndarray<nb::numpy, T, nb::ndim<Dims>> owned_array(std::unique_ptr<T[]> data, const std::size_t (&shape)[Dims]) {
    T* raw = data.release();
    nb::capsule owner(raw, [](void* p) noexcept { delete[] static_cast<T*>(p); });
    return nb::ndarray<nb::numpy, T, nb::ndim<Dims>>(raw, Dims, shape, owner);
}

nb::ndarray<nb::numpy, float, nb::ndim<3>> log_mel_phase(Samples samples, Melbank melbank, std::size_t n_fft,
                                                          std::size_t hop, std::size_t threads) {
    const mvrt::MelSpecShape shape{samples.shape(0), n_fft, hop, melbank.shape(0)};
    mvrt::validate(shape);
    if (melbank.shape(1) != n_fft / 2 + 1) {
        throw std::invalid_argument("log_mel_phase: the mel bank has " + std::to_string(melbank.shape(1)) +
                                    " columns, expected n_fft / 2 + 1 = " + std::to_string(n_fft / 2 + 1));
    }
    const std::size_t out_shape[3] = {2, shape.n_mels, shape.frames()};
    std::unique_ptr<float[]> out(new float[2 * shape.n_mels * shape.frames()]);
    {
        nb::gil_scoped_release release;
        mvrt::log_mel_phase(samples.data(), melbank.data(), shape, threads, out.get());
    }
    return owned_array(std::move(out), out_shape);
}

nb::ndarray<nb::numpy, std::complex<double>, nb::ndim<1>> rfft(Signal64 x) {
    const mvrt::RealFft fft(x.shape(0));  // throws for sizes that are not powers of two
    const std::size_t bins = fft.bins();
    std::vector<double> re(bins), im(bins);
    fft.transform(x.data(), re.data(), im.data());
    std::unique_ptr<std::complex<double>[]> out(new std::complex<double>[bins]);
    for (std::size_t k = 0; k < bins; ++k) out[k] = {re[k], im[k]};
    const std::size_t out_shape[1] = {bins};
    return owned_array(std::move(out), out_shape);
}

}  // namespace

NB_MODULE(_native, m) {
    m.doc() = "mvrt native kernels: radix-2 FFT and the log-mel/phase front-end (DESIGN section 4).";
    m.def("log_mel_phase", &log_mel_phase, nb::arg("samples"), nb::arg("melbank"), nb::arg("n_fft"),
          nb::arg("hop"), nb::arg("threads") = 0,
          "float32 (2, n_mels, 1 + len(samples) // hop): 10 log10(max(M |S|^2, 1e-10)) and angle(M S) of the "
          "centred, zero-padded, periodic-Hann STFT S. threads=0 uses every core. Releases the GIL.");
    m.def("rfft", &rfft, nb::arg("x"),
          "Real FFT of a float64 signal whose length is a power of two >= 2 (n // 2 + 1 complex128 bins).");
}
