import Foundation

/// An axis of a line chart: its scale, its range and "nice" ticks (1-2-5 steps, one precision for
/// every label), so a reader never squints at 0.02, 0.23, 0.43 or a loss axis below zero.
public struct ChartAxis: Sendable {
    public enum Scale: Sendable { case linear, log }

    public var label: String
    public var scale: Scale = .linear
    /// A fixed range (e.g. 0…100 for accuracy in %); nil: the data's, widened to whole ticks.
    public var range: ClosedRange<Double>? = nil
    /// Whether every value is a whole number (epochs): ticks are whole too.
    public var integral = false
    /// Values never go below this (cross-entropy ≥ 0): the axis does not either.
    public var floor: Double? = nil

    public init(label: String, scale: Scale = .linear, range: ClosedRange<Double>? = nil, integral: Bool = false, floor: Double? = nil) {
        (self.label, self.scale, self.range, self.integral, self.floor) = (label, scale, range, integral, floor)
    }

    /// The axis' extent and ticks for `values`.
    func layout(_ values: [Double], ticks wanted: Int = 6) -> (low: Double, high: Double, ticks: [Double], decimals: Int) {
        if scale == .log { return logLayout(values.filter { $0 > 0 }) }
        var low = range?.lowerBound ?? values.min() ?? 0, high = range?.upperBound ?? values.max() ?? 1
        if high <= low { (low, high) = integral ? (low, low + 1) : (low - 0.5, low + 0.5) }
        let step = max(Self.niceStep((high - low) / Double(max(wanted - 1, 1))), integral ? 1 : 0)
        if range == nil {
            // Whole-number axes (epochs) start at their first value: no tick without data before it.
            if !integral { low = (low / step).rounded(.down) * step }
            high = (high / step).rounded(.up) * step
            if let floor { low = max(low, floor) }
        }
        let first = (low / step).rounded(.up) * step
        let ticks = stride(from: first, through: high + step * 1e-9, by: step).map { abs($0) < step * 1e-9 ? 0 : $0 }
        return (low, high, ticks, Self.decimals(step))
    }

    /// Decades, with 2 and 5 between them when the range spans few decades.
    func logLayout(_ values: [Double]) -> (low: Double, high: Double, ticks: [Double], decimals: Int) {
        let lo = values.min() ?? 0.1, hi = values.max() ?? 1
        let low = pow(10, Foundation.floor(log10(lo))), high = pow(10, ceil(log10(max(hi, lo * 1.01))))
        let decades = Int((log10(high) - log10(low)).rounded())
        let multiples: [Double] = decades <= 2 ? [1, 2, 5] : [1]
        var ticks: [Double] = []
        for d in 0...decades {
            for m in multiples {
                let t = low * pow(10, Double(d)) * m
                if t >= low * (1 - 1e-9) && t <= high * (1 + 1e-9) { ticks.append(t) }
            }
        }
        return (low, high, ticks, max(0, Self.decimals(low)))
    }

    /// The 1-2-5 step nearest above `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let magnitude = pow(10, Foundation.floor(log10(raw)))
        return [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw * (1 - 1e-9) }!
    }

    /// Digits after the point that a step needs (0.2 → 1, 0.05 → 2, 5 → 0).
    static func decimals(_ step: Double) -> Int { max(0, Int(ceil(-log10(step) - 1e-9))) }

    /// A tick's label, with the axis' precision.
    static func label(_ value: Double, decimals: Int) -> String { String(format: "%.\(decimals)f", value) }
}
