import Foundation

/// Minimal SVG charts for reports: line charts, heatmaps (sweeps, confusion matrices).
public enum SVG {
    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(
            of: ">", with: "&gt;")
    }

    static func number(_ v: Double) -> String {
        abs(v) >= 100 ? String(format: "%.0f", v) : abs(v) >= 10 ? String(format: "%.1f", v) : String(format: "%.2f", v)
    }

    /// A line chart of named series of (x, y) points, with axes, ticks and a legend.
    public static func lineChart(
        title: String, xLabel: String, yLabel: String, series: [(name: String, points: [(Double, Double)], dashed: Bool)],
        width: Int = 900, height: Int = 420
    ) -> String {
        let all = series.flatMap(\.points)
        guard !all.isEmpty else { return "<svg xmlns=\"http://www.w3.org/2000/svg\"/>" }
        var (x0, x1) = (all.map(\.0).min()!, all.map(\.0).max()!)
        var (y0, y1) = (all.map(\.1).min()!, all.map(\.1).max()!)
        if x1 == x0 { x1 = x0 + 1 }
        if y1 == y0 { y1 = y0 + 1 }
        let pad = (y1 - y0) * 0.05
        y0 -= pad; y1 += pad
        x0 = min(x0, 0)
        let legend = 40 + 7 * Double(series.map(\.name.count).max() ?? 10)
        let (left, right, top, bottom) = (60.0, Double(width) - legend, 40.0, Double(height) - 50)
        // Whole-number x axes (epochs) get whole-number ticks.
        let integral = all.allSatisfy { $0.0 == $0.0.rounded() }
        let xTicks =
            integral
            ? Array(stride(from: x0, through: x1, by: max(1, ((x1 - x0) / 8).rounded(.up))))
            : (0...5).map { x0 + (x1 - x0) * Double($0) / 5 }
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * (right - left) }
        func py(_ y: Double) -> Double { bottom - (y - y0) / (y1 - y0) * (bottom - top) }
        var out =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" font-family=\"sans-serif\" font-size=\"12\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        out += "<text x=\"\(width / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(escape(title))</text>\n"
        for i in 0...5 {
            let y = y0 + (y1 - y0) * Double(i) / 5
            out += "<line x1=\"\(left)\" y1=\"\(py(y))\" x2=\"\(right)\" y2=\"\(py(y))\" stroke=\"#eee\"/>"
            out += "<text x=\"\(left - 6)\" y=\"\(py(y) + 4)\" text-anchor=\"end\">\(number(y))</text>\n"
        }
        for x in xTicks {
            out += "<text x=\"\(px(x))\" y=\"\(bottom + 16)\" text-anchor=\"middle\">\(integral ? String(Int(x)) : number(x))</text>\n"
        }
        out += "<line x1=\"\(left)\" y1=\"\(bottom)\" x2=\"\(right)\" y2=\"\(bottom)\" stroke=\"black\"/>"
        out += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(bottom)\" stroke=\"black\"/>\n"
        out += "<text x=\"\((left + right) / 2)\" y=\"\(height - 12)\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        out +=
            "<text x=\"16\" y=\"\((top + bottom) / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 16 \((top + bottom) / 2))\">\(escape(yLabel))</text>\n"
        // A run's train and validation curves share a colour (validation dashed).
        var colorKeys: [String] = []
        for s in series where !colorKeys.contains(s.name.replacingOccurrences(of: " (val)", with: "")) {
            colorKeys.append(s.name.replacingOccurrences(of: " (val)", with: ""))
        }
        for (i, s) in series.enumerated() {
            let color = palette[colorKeys.firstIndex(of: s.name.replacingOccurrences(of: " (val)", with: ""))! % palette.count]
            let path = s.points.map { String(format: "%.1f,%.1f", px($0.0), py($0.1)) }.joined(separator: " ")
            out +=
                "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(s.dashed ? " stroke-dasharray=\"5,4\"" : "") points=\"\(path)\"/>\n"
            for p in s.points { out += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%@\"/>", px(p.0), py(p.1), color) }
            let ly = top + 16 * Double(i)
            out +=
                "<line x1=\"\(right + 12)\" y1=\"\(ly)\" x2=\"\(right + 32)\" y2=\"\(ly)\" stroke=\"\(color)\" stroke-width=\"2\"\(s.dashed ? " stroke-dasharray=\"5,4\"" : "")/>"
            out += "<text x=\"\(right + 36)\" y=\"\(ly + 4)\">\(escape(s.name))</text>\n"
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
