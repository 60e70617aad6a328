import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Resident-set-size readings of the benchmark process (Linux).
enum Memory {
    /// Lifetime peak RSS of this process from `getrusage(RUSAGE_SELF)`, in bytes.
    static func lifetimePeakRSS() -> Int {
        var usage = rusage()
        guard getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage) == 0 else { return 0 }
        return Int(usage.ru_maxrss) * 1024  // Linux reports kilobytes
    }

    /// Resets the kernel's RSS high-water mark (`VmHWM`) so that the next reading covers
    /// only what follows. `getrusage` cannot be reset, and its lifetime peak would include
    /// data generation, so the per-phase peak comes from `/proc/self/status` instead.
    /// Returns false when the kernel does not allow it.
    @discardableResult
    static func resetHighWaterMark() -> Bool {
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? handle.close() }
        do {
            try handle.write(contentsOf: Data("5".utf8))
            return true
        } catch {
            return false
        }
    }

    /// `VmHWM` (peak RSS since start or the last reset) in bytes.
    static func highWaterMark() -> Int? { statusField("VmHWM:") }

    /// `VmRSS` (current RSS) in bytes.
    static func currentRSS() -> Int? { statusField("VmRSS:") }

    private static func statusField(_ name: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            let kb = line.dropFirst(name.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { Int($0) }
            return kb.map { $0 * 1024 }
        }
        return nil
    }
}

/// Summary statistics over a handful of runs.
enum Stats {
    /// The median (mean of the two middle values for an even count); 0 for no values.
    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }

    static func median(_ values: [Int]) -> Double {
        median(values.map(Double.init))
    }
}
