// Log-mel power and mel phase of a centred STFT (DESIGN §4 audio steps 4-6).
#pragma once

#include <cstddef>

namespace mvrt {

struct MelSpecShape {
    std::size_t n_samples;  // length of the signal, >= 1
    std::size_t n_fft;      // power of two >= 2
    std::size_t hop;        // >= 1
    std::size_t n_mels;     // rows of the mel bank, whose columns are n_fft / 2 + 1
    std::size_t frames() const { return 1 + n_samples / hop; }
};

// Throws std::invalid_argument when the shape is unusable.
void validate(const MelSpecShape& shape);

// out: float32 (2, n_mels, frames), channel 0 = 10 log10(max(M |S|^2, 1e-10)),
// channel 1 = angle(M S). Frames are split over `threads` std::threads (0 = all cores,
// capped by the frame count). Does not touch Python state, so the GIL may be released.
void log_mel_phase(const float* samples, const float* melbank, const MelSpecShape& shape,
                   std::size_t threads, float* out);

}  // namespace mvrt
