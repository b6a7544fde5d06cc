//! G.711 µ-law (PCMU) sample coding, by formula (ITU-T G.711, as in the classic
//! Sun reference implementation): 14-bit magnitude, bias 0x84, 8 segments.

const BIAS: i32 = 0x84;
const CLIP: i32 = 32_635;

/// Encodes one 16-bit linear sample as a µ-law byte.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample);
    let sign = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    pcm = pcm.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && pcm & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (pcm >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// Decodes one µ-law byte to a 16-bit linear sample.
pub fn ulaw_to_linear(code: u8) -> i16 {
    let code = !code;
    let exponent = i32::from((code >> 4) & 0x07);
    let mantissa = i32::from(code & 0x0F);
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    if code & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Encodes a buffer of 8 kHz linear samples as µ-law bytes.
pub fn encode_ulaw(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| linear_to_ulaw(s)).collect()
}

/// Decodes µ-law bytes to 8 kHz linear samples.
pub fn decode_ulaw(codes: &[u8]) -> Vec<i16> {
    codes.iter().map(|&c| ulaw_to_linear(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for code in 0..=255u8 {
            if code == 0x7F {
                // "negative zero" decodes to 0, which encodes as the positive zero 0xFF.
                assert_eq!(linear_to_ulaw(ulaw_to_linear(code)), 0xFF);
                continue;
            }
            assert_eq!(
                linear_to_ulaw(ulaw_to_linear(code)),
                code,
                "decoding then encoding must give the same µ-law code"
            );
        }
    }

    #[test]
    fn linear_round_trip_error_is_within_one_quantisation_step() {
        for sample in (i16::MIN..=i16::MAX).step_by(7) {
            let back = ulaw_to_linear(linear_to_ulaw(sample));
            let magnitude = i32::from(sample).abs().min(CLIP);
            // Segment e holds biased magnitudes in [2^(e+7), 2^(e+8)) with a step of
            // 2^(e+3); the decoder returns the middle of the step.
            let segment = 31 - ((magnitude + BIAS) >> 7).max(1).leading_zeros();
            let step = 1i32 << (segment + 3);
            let err = (i32::from(back) - i32::from(sample).clamp(-CLIP, CLIP)).abs();
            assert!(
                err <= step,
                "sample {sample} came back as {back} (error {err} > step {step})"
            );
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x80), 32_124);
        assert_eq!(ulaw_to_linear(0x00), -32_124);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(decode_ulaw(&encode_ulaw(&[0, 1000, -1000])).len(), 3);
    }
}
