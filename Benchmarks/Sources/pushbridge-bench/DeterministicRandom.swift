/// A seeded, reproducible pseudo-random generator (SplitMix64).
///
/// Written by hand because the standard library only offers the system (non-seedable)
/// generator and none of the allowed packages ships a seeded one; every benchmark run
/// must generate byte-identical content.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    /// A generator for a sub-stream derived from `seed` and a list of labels, so that
    /// content of e.g. file 17 at version 3 does not depend on what was generated before it.
    init(seed: UInt64, _ labels: UInt64...) {
        var s = seed
        for label in labels {
            var g = SplitMix64(seed: s ^ (label &* 0xD1B5_4A32_D192_ED03))
            s = g.next()
        }
        self.state = s
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform integer in `0..<bound` (bound > 0); the tiny modulo bias is irrelevant here
    /// and keeps generation fast and reproducible across platforms.
    mutating func below(_ bound: Int) -> Int {
        Int(next() % UInt64(bound))
    }

    /// Uniform value in `0 ..< 1`.
    mutating func unit() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }
}
