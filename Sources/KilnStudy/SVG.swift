import Foundation

/// Minimal SVG charts for reports: line charts, heatmaps (sweeps, confusion matrices).
public enum SVG {

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(
            of: ">", with: "&gt;")
    }

    /// Okabe & Ito's colour-blind-safe palette (black last: it is the axes' colour).
    static let palette = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#000000"]

    /// One curve; curves sharing a name share a colour and one legend entry, `dashed` marks the
    /// second kind (validation beside training).
    public struct Series: Sendable {
        public var name: String
        public var points: [(Double, Double)]
        public var dashed: Bool
        public init(_ name: String, _ points: [(Double, Double)], dashed: Bool = false) {
            (self.name, self.points, self.dashed) = (name, points, dashed)
        }
    }

    /// A line chart with nice ticks on both axes (`ChartAxis`) and a legend of one entry per
    /// series name, plus a key for the line styles when some series are dashed (`styles`:
    /// what solid and dashed mean). Tick labels carry `class="tick-x"`/`"tick-y"` (tests read them).
    public static func lineChart(
        title: String, x: ChartAxis, y: ChartAxis, series: [Series], styles: (solid: String, dashed: String)? = nil,
        width: Int = 900, height: Int = 420
    ) -> String {
        let all = series.flatMap(\.points).filter { y.scale == .linear || $0.1 > 0 }
        guard !all.isEmpty else { return "<svg xmlns=\"http://www.w3.org/2000/svg\"/>" }
        let xs = x.layout(all.map(\.0), ticks: x.integral ? min(9, Int(all.map(\.0).max()! - all.map(\.0).min()!) + 1) : 6)
        let ys = y.layout(all.map(\.1))
        var names: [String] = []
        for s in series where !names.contains(s.name) { names.append(s.name) }
        let showStyles = styles != nil && series.contains(where: \.dashed)
        let entries = names + (showStyles ? [styles!.solid, styles!.dashed] : [])
        let legend = 48 + 7 * Double(entries.map(\.count).max() ?? 10)
        let (left, right, top, bottom) = (64.0, Double(width) - legend, 40.0, Double(height) - 50)
        func position(_ v: Double, _ axis: ChartAxis, _ l: (low: Double, high: Double, ticks: [Double], decimals: Int)) -> Double {
            axis.scale == .log ? (log10(v) - log10(l.low)) / (log10(l.high) - log10(l.low)) : (v - l.low) / (l.high - l.low)
        }
        func px(_ v: Double) -> Double { left + position(v, x, xs) * (right - left) }
        func py(_ v: Double) -> Double { bottom - position(v, y, ys) * (bottom - top) }
        var out =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" font-family=\"sans-serif\" font-size=\"12\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        out += "<text x=\"\(width / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(escape(title))</text>\n"
        for t in ys.ticks {
            out += "<line x1=\"\(left)\" y1=\"\(py(t))\" x2=\"\(right)\" y2=\"\(py(t))\" stroke=\"#e5e5e5\"/>"
            out += "<text class=\"tick-y\" x=\"\(left - 6)\" y=\"\(py(t) + 4)\" text-anchor=\"end\">"
            out += "\(ChartAxis.label(t, decimals: y.scale == .log ? max(0, ChartAxis.decimals(t)) : ys.decimals))</text>\n"
        }
        for t in xs.ticks {
            out +=
                "<text class=\"tick-x\" x=\"\(px(t))\" y=\"\(bottom + 16)\" text-anchor=\"middle\">\(ChartAxis.label(t, decimals: xs.decimals))</text>\n"
        }
        out += "<line x1=\"\(left)\" y1=\"\(bottom)\" x2=\"\(right)\" y2=\"\(bottom)\" stroke=\"black\"/>"
        out += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(bottom)\" stroke=\"black\"/>\n"
        out += "<text x=\"\((left + right) / 2)\" y=\"\(height - 12)\" text-anchor=\"middle\">\(escape(x.label))</text>\n"
        let mid = (top + bottom) / 2
        out += "<text x=\"16\" y=\"\(mid)\" text-anchor=\"middle\" transform=\"rotate(-90 16 \(mid))\">\(escape(y.label))</text>\n"
        let dash = " stroke-dasharray=\"6,4\""
        for s in series {
            let color = palette[names.firstIndex(of: s.name)! % palette.count]
            let points = s.points.filter { y.scale == .linear || $0.1 > 0 }
            let path = points.map { String(format: "%.1f,%.1f", px($0.0), py($0.1)) }.joined(separator: " ")
            out += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(s.dashed ? dash : "") points=\"\(path)\"/>\n"
            for p in points { out += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%@\"/>", px(p.0), py(p.1), color) }
        }
        for (i, entry) in entries.enumerated() {
            let ly = top + 16 * Double(i) + (i >= names.count ? 8 : 0)
            let isStyle = i >= names.count
            let color = isStyle ? "#555" : palette[i % palette.count]
            out += "<line x1=\"\(right + 12)\" y1=\"\(ly)\" x2=\"\(right + 36)\" y2=\"\(ly)\" stroke=\"\(color)\" stroke-width=\"2\""
            out += "\(isStyle && i == names.count + 1 ? dash : "")/>"
            out += "<text class=\"legend\" x=\"\(right + 40)\" y=\"\(ly + 4)\">\(escape(entry))</text>\n"
        }
        return out + "</svg>\n"
    }

    /// A grid of values in [0, 1] (white → blue), with row and column labels and the value in each cell.
    public static func heatmap(
        title: String, rows: [String], columns: [String], values: [[Double]], format: String = "%.2f",
        rowTitle: String = "", columnTitle: String = "", cell: Int = 48
    ) -> String {
        let left = 20 + 7 * (rows.map(\.count).max() ?? 4), top = 60 + 6 * (columns.map(\.count).max() ?? 4)
        let width = left + cell * columns.count + 20 + 5 * (columns.map(\.count).max() ?? 4), height = top + cell * rows.count + 40
        let maxValue = max(values.flatMap { $0 }.max() ?? 1, 1e-9)
        var out =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" font-family=\"sans-serif\" font-size=\"11\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        out += "<text x=\"\(width / 2)\" y=\"20\" text-anchor=\"middle\" font-size=\"15\">\(escape(title))</text>\n"
        for (j, c) in columns.enumerated() {
            let x = left + j * cell + cell / 2
            out += "<text x=\"\(x)\" y=\"\(top - 6)\" transform=\"rotate(-45 \(x) \(top - 6))\">\(escape(c))</text>\n"
        }
        for (i, r) in rows.enumerated() {
            out += "<text x=\"\(left - 6)\" y=\"\(top + i * cell + cell / 2 + 4)\" text-anchor=\"end\">\(escape(r))</text>\n"
            for j in columns.indices {
                let v = values[i][j] / maxValue
                let shade = Int(255 - 200 * v)
                out +=
                    "<rect x=\"\(left + j * cell)\" y=\"\(top + i * cell)\" width=\"\(cell)\" height=\"\(cell)\" fill=\"rgb(\(shade),\(shade + Int(30 * v)),255)\" stroke=\"white\"/>"
                out +=
                    "<text x=\"\(left + j * cell + cell / 2)\" y=\"\(top + i * cell + cell / 2 + 4)\" text-anchor=\"middle\" fill=\"\(v > 0.6 ? "white" : "black")\">\(String(format: format, values[i][j]))</text>\n"
            }
        }
        if !rowTitle.isEmpty {
            out += "<text x=\"10\" y=\"\(top - 20)\" font-style=\"italic\">\(escape(rowTitle)) ↓  \(escape(columnTitle)) →</text>\n"
        }
        return out + "</svg>\n"
    }
}
