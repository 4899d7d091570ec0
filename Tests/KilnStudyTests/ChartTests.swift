import Foundation
import Testing

@testable import KilnStudy

/// The report's plots, read back from the SVG: tick labels monotone, inside the plotted range,
/// one precision per axis, no negative loss, accuracy on 0–100, epochs from 1, one legend entry
/// per run (issue 15).
struct ChartTests {
    func ticks(_ svg: String, _ axis: String) -> [String] {
        svg.components(separatedBy: "<text class=\"tick-\(axis)\"").dropFirst().map {
            String($0[$0.index(after: $0.firstIndex(of: ">")!)..<$0.range(of: "</text>")!.lowerBound])
        }
    }

    func legend(_ svg: String) -> [String] {
        svg.components(separatedBy: "<text class=\"legend\"").dropFirst().map {
            String($0[$0.index(after: $0.firstIndex(of: ">")!)..<$0.range(of: "</text>")!.lowerBound])
        }
    }

    func checkMonotoneWithOnePrecision(_ labels: [String], _ context: String) {
        let values = labels.compactMap(Double.init)
        #expect(values.count == labels.count && values.count >= 2, "\(context): \(labels)")
        #expect(zip(values, values.dropFirst()).allSatisfy { $0 < $1 }, "\(context): \(labels)")
    }

    @Test func lossOnALogScaleWithAnOutlierAndEpochsFromOne() {
        let train = (1...8).map { (Double($0), 2.5 / Double($0)) }
        var validation = (1...8).map { (Double($0), 3.0 / Double($0)) }
        validation[0].1 = 133.6  // the epoch-1 outlier that flattened every curve
        let svg = SVG.lineChart(
            title: "Loss", x: ChartAxis(label: "epoch", integral: true), y: ChartAxis(label: "loss", scale: .log),
            series: [SVG.Series("run", train), SVG.Series("run", validation, dashed: true)], styles: ("training", "validation"))
        let y = ticks(svg, "y"), x = ticks(svg, "x")
        checkMonotoneWithOnePrecision(y, "loss ticks")
        #expect(y.compactMap(Double.init).allSatisfy { $0 > 0 }, "\(y)")
        #expect(Double(y.first!)! <= 2.5 / 8 && Double(y.last!)! >= 133.6, "\(y)")
        #expect(x == ["1", "2", "3", "4", "5", "6", "7", "8"], "\(x)")
        #expect(legend(svg) == ["run", "training", "validation"])
    }

    @Test func accuracyInPercentOnZeroToHundredWithNiceTicks() {
        let points = [(1.0, 34.3), (2.0, 57.1), (3.0, 71.4), (4.0, 80.2)]
        let svg = SVG.lineChart(
            title: "Accuracy", x: ChartAxis(label: "epoch", integral: true), y: ChartAxis(label: "accuracy (%)", range: 0...100),
            series: [SVG.Series("a", points), SVG.Series("b", points.map { ($0.0, $0.1 / 2) })])
        #expect(ticks(svg, "y") == ["0", "20", "40", "60", "80", "100"])
        #expect(legend(svg) == ["a", "b"])
    }

    @Test(arguments: [(0.0, 24.1), (0.13, 0.87), (3.0, 1234.0), (-0.02, 0.043)])
    func linearTicksAre125StepsWithOnePrecision(_ range: (Double, Double)) {
        let points = [(range.0, 1.0), (range.1, 2.0)]
        let svg = SVG.lineChart(title: "t", x: ChartAxis(label: "s"), y: ChartAxis(label: "v"), series: [SVG.Series("s", points)])
        let labels = ticks(svg, "x")
        checkMonotoneWithOnePrecision(labels, "\(range)")
        let decimals = Set(labels.map { $0.split(separator: ".").dropFirst().first?.count ?? 0 })
        #expect(decimals.count == 1, "mixed precision: \(labels)")
        let values = labels.compactMap(Double.init)
        let step = values[1] - values[0]
        let mantissa = step / pow(10, floor(log10(step)))
        #expect([1, 2, 5].contains { abs(mantissa - $0) < 1e-6 }, "step \(step) in \(labels)")
        #expect(values.first! >= range.0 - step && values.last! <= range.1 + step, "\(labels) for \(range)")
    }
}
