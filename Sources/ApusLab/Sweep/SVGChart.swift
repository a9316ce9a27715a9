import Foundation

/// A small SVG chart writer for the lab's reports: line/scatter series on linear or log axes,
/// with markers and horizontal reference lines; or categorical bars. No dependencies, so the
/// reports regenerate anywhere the lab runs.
struct SVGChart {
    struct Series {
        var name: String
        var points: [(x: Double, y: Double)]
        var lines = true
        var dots = true
        var dashed = false
    }

    struct Marker {
        var x: Double
        var y: Double
        var label: String
    }

    var title: String
    var xLabel: String
    var yLabel: String
    var xLog = false
    var yLog = false
    var series: [Series] = []
    var markers: [Marker] = []
    var horizontalLines: [(y: Double, label: String)] = []
    /// Events at an x (e.g. a fault during a run): dashed lines, labelled at the top.
    var verticalLines: [(x: Double, label: String)] = []
    /// Custom tick labels for the x axis (value → text), e.g. for percentiles.
    var xTicks: [(value: Double, label: String)]?
    var width = 820.0
    var height = 440.0

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    static func number(_ v: Double) -> String {
        if v == 0 { return "0" }
        let a = abs(v)
        if a >= 1e6 { return trim(v / 1e6) + "M" }
        if a >= 1e3 { return trim(v / 1e3) + "k" }
        return trim(v)
    }

    static func trim(_ v: Double) -> String {
        var s = String(format: abs(v) >= 100 ? "%.0f" : abs(v) >= 10 ? "%.1f" : abs(v) >= 1 ? "%.2f" : "%.3g", v)
        if s.contains(".") && !s.contains("e") {
            while s.hasSuffix("0") { s.removeLast() }
            if s.hasSuffix(".") { s.removeLast() }
        }
        return s
    }

    /// Ticks at 1-2-5 steps (linear) or at powers of ten (log) covering lo...hi.
    static func ticks(_ lo: Double, _ hi: Double, log: Bool) -> [Double] {
        if log {
            var out: [Double] = []
            var e = floor(log10(lo))
            while pow(10, e) <= hi * 1.0001 {
                for m in [1.0, 2, 5] where pow(10, e) * m >= lo * 0.9999 && pow(10, e) * m <= hi * 1.0001 { out.append(pow(10, e) * m) }
                e += 1
            }
            return out.count > 12 ? out.filter { abs(log10($0).rounded() - log10($0)) < 1e-9 } : out
        }
        let span = hi - lo
        guard span > 0 else { return [lo] }
        let raw = span / 6
        let mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? mag * 10
        var out: [Double] = []
        var v = ceil(lo / step) * step
        while v <= hi + step * 1e-9 {
            out.append(abs(v) < step * 1e-9 ? 0 : v)
            v += step
        }
        return out
    }

    static let legendCharacters = 48

    func render() -> String {
        // The legend's column is as wide as its longest name (about 7 px a character), and the
        // picture grows by what the plot would otherwise lose, so no name is cut at the edge.
        let legend = series.map { min($0.name.count, Self.legendCharacters) }.max() ?? 0
        let right = max(60.0, 40 + Double(legend) * 7.2)
        let left = 78.0, top = 40.0, bottom = 56.0
        let width = self.width - 328 + left + right  // the plot keeps the width it had with a 250 px column
        let plotW = width - left - right, plotH = height - top - bottom
        let all = series.flatMap(\.points) + markers.map { (x: $0.x, y: $0.y) } + horizontalLines.map { (x: Double.nan, y: $0.y) }
            + verticalLines.map { (x: $0.x, y: Double.nan) }
        let xs = all.map(\.x).filter { $0.isFinite && (!xLog || $0 > 0) }
        let ys = all.map(\.y).filter { $0.isFinite && (!yLog || $0 > 0) }
        var x0 = xs.min() ?? 0, x1 = xs.max() ?? 1
        var y0 = ys.min() ?? 0, y1 = ys.max() ?? 1
        if let xt = xTicks, let f = xt.first, let l = xt.last { x0 = min(x0, f.value); x1 = max(x1, l.value) }
        if !xLog { x0 = min(x0, 0) }
        if !yLog { y0 = min(y0, 0) }
        if xLog { x0 = pow(10, floor(log10(x0))); x1 = pow(10, ceil(log10(x1))) }
        if yLog { y0 = pow(10, floor(log10(y0))); y1 = pow(10, ceil(log10(y1))) } else { y1 *= 1.08 }
        if x1 <= x0 { x1 = x0 + 1 }
        if y1 <= y0 { y1 = y0 + 1 }
        func sx(_ x: Double) -> Double {
            let t = xLog ? (log10(x) - log10(x0)) / (log10(x1) - log10(x0)) : (x - x0) / (x1 - x0)
            return left + t * plotW
        }
        func sy(_ y: Double) -> Double {
            let t = yLog ? (log10(y) - log10(y0)) / (log10(y1) - log10(y0)) : (y - y0) / (y1 - y0)
            return top + plotH - t * plotH
        }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(f(left))" y="22" font-size="15" font-weight="bold">\(Self.escape(title))</text>

        """
        // Grid and ticks.
        for t in xTicks.map({ $0.map(\.value) }) ?? Self.ticks(x0, x1, log: xLog) where t >= x0 && t <= x1 {
            let label = xTicks?.first { $0.value == t }?.label ?? Self.number(t)
            s += "<line x1=\"\(f(sx(t)))\" y1=\"\(f(top))\" x2=\"\(f(sx(t)))\" y2=\"\(f(top + plotH))\" stroke=\"#e5e5e5\"/>\n"
            s += "<text x=\"\(f(sx(t)))\" y=\"\(f(top + plotH + 16))\" text-anchor=\"middle\">\(Self.escape(label))</text>\n"
        }
        for t in Self.ticks(y0, y1, log: yLog) where t >= y0 && t <= y1 {
            s += "<line x1=\"\(f(left))\" y1=\"\(f(sy(t)))\" x2=\"\(f(left + plotW))\" y2=\"\(f(sy(t)))\" stroke=\"#e5e5e5\"/>\n"
            s += "<text x=\"\(f(left - 6))\" y=\"\(f(sy(t) + 4))\" text-anchor=\"end\">\(Self.number(t))</text>\n"
        }
        s += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#333\"/>\n"
        s += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 14))\" text-anchor=\"middle\">\(Self.escape(xLabel))</text>\n"
        s += "<text transform=\"translate(18,\(f(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">\(Self.escape(yLabel))</text>\n"
        for line in horizontalLines where line.y >= y0 && line.y <= y1 {
            s += "<line x1=\"\(f(left))\" y1=\"\(f(sy(line.y)))\" x2=\"\(f(left + plotW))\" y2=\"\(f(sy(line.y)))\" stroke=\"#999\" stroke-dasharray=\"6 4\"/>\n"
            // The label sits in the legend column, level with its line, so it never covers a curve.
            s += "<text x=\"\(f(left + plotW + 6))\" y=\"\(f(sy(line.y) + 4))\" fill=\"#666\">\(Self.escape(line.label))</text>\n"
        }
        for (i, line) in verticalLines.enumerated() where line.x >= x0 && line.x <= x1 {
            s += "<line x1=\"\(f(sx(line.x)))\" y1=\"\(f(top))\" x2=\"\(f(sx(line.x)))\" y2=\"\(f(top + plotH))\" stroke=\"#555\" stroke-dasharray=\"3 3\"/>\n"
            // Labels step down so that events close together stay readable.
            s += "<text x=\"\(f(sx(line.x) + 3))\" y=\"\(f(top + 12 + Double(i % 4) * 13))\" font-size=\"11\" fill=\"#333\">\(Self.escape(line.label))</text>\n"
        }
        func visible(_ p: (x: Double, y: Double)) -> Bool {
            p.x.isFinite && p.y.isFinite && (!xLog || p.x > 0) && (!yLog || p.y > 0)
        }
        for (i, serie) in series.enumerated() {
            let color = Self.palette[i % Self.palette.count]
            let pts = serie.points.filter(visible)
            if serie.lines && pts.count > 1 {
                let path = pts.map { "\(f(sx($0.x))),\(f(sy($0.y)))" }.joined(separator: " ")
                s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.6\"\(serie.dashed ? " stroke-dasharray=\"5 3\"" : "")/>\n"
            }
            if serie.dots {
                for p in pts { s += "<circle cx=\"\(f(sx(p.x)))\" cy=\"\(f(sy(p.y)))\" r=\"3.2\" fill=\"\(color)\"/>\n" }
            }
            let ly = top + 8 + Double(i) * 17
            if ly < height - 10 {
                s += "<rect x=\"\(f(left + plotW + 14))\" y=\"\(f(ly - 9))\" width=\"12\" height=\"12\" fill=\"\(color)\"/>\n"
                s += "<text x=\"\(f(left + plotW + 32))\" y=\"\(f(ly + 1))\">\(Self.escape(String(serie.name.prefix(Self.legendCharacters))))</text>\n"
            }
        }
        for m in markers where visible((m.x, m.y)) {
            let cx = sx(m.x), cy = sy(m.y)
            s += "<path d=\"M\(f(cx)),\(f(cy - 8)) L\(f(cx + 7)),\(f(cy + 5)) L\(f(cx - 7)),\(f(cy + 5)) Z\" fill=\"none\" stroke=\"black\" stroke-width=\"1.5\"/>\n"
            s += "<text x=\"\(f(cx + 9))\" y=\"\(f(cy - 8))\" font-size=\"11\">\(Self.escape(m.label))</text>\n"
        }
        return s + "</svg>\n"
    }

    /// Bars per category in panels (one panel per group), each bar labelled on top.
    static func bars(title: String, yLabel: String, panels: [(name: String, bars: [(label: String, value: Double, note: String)])]) -> String {
        let panelW = 220.0, panelH = 240.0, top = 50.0, left = 70.0
        let perRow = max(1, min(4, panels.count))
        let rows = (panels.count + perRow - 1) / perRow
        let width = left + Double(perRow) * (panelW + 30) + 10
        let height = top + Double(rows) * (panelH + 70)
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(f(left))" y="24" font-size="15" font-weight="bold">\(escape(title))</text>

        """
        // One scale for every panel, so that bars compare across panels too.
        let maxV = max(panels.flatMap { $0.bars.map(\.value) }.filter(\.isFinite).max() ?? 1, 1e-12) * 1.15
        for (pi, panel) in panels.enumerated() {
            let ox = left + Double(pi % perRow) * (panelW + 30)
            let oy = top + Double(pi / perRow) * (panelH + 70)
            s += "<text x=\"\(f(ox + panelW / 2))\" y=\"\(f(oy - 6))\" text-anchor=\"middle\" font-weight=\"bold\">\(escape(panel.name))</text>\n"
            s += "<line x1=\"\(f(ox))\" y1=\"\(f(oy + panelH))\" x2=\"\(f(ox + panelW))\" y2=\"\(f(oy + panelH))\" stroke=\"#333\"/>\n"
            s += "<line x1=\"\(f(ox))\" y1=\"\(f(oy))\" x2=\"\(f(ox))\" y2=\"\(f(oy + panelH))\" stroke=\"#333\"/>\n"
            for t in ticks(0, maxV, log: false) where t <= maxV {
                let y = oy + panelH - t / maxV * panelH
                s += "<line x1=\"\(f(ox - 3))\" y1=\"\(f(y))\" x2=\"\(f(ox))\" y2=\"\(f(y))\" stroke=\"#333\"/>\n"
                if pi % perRow == 0 { s += "<text x=\"\(f(ox - 6))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(number(t))</text>\n" }
            }
            let n = Double(max(panel.bars.count, 1))
            let slot = panelW / n
            for (bi, bar) in panel.bars.enumerated() where bar.value.isFinite {
                let h = bar.value / maxV * panelH
                let x = ox + Double(bi) * slot + slot * 0.15
                s += "<rect x=\"\(f(x))\" y=\"\(f(oy + panelH - h))\" width=\"\(f(slot * 0.7))\" height=\"\(f(h))\" fill=\"\(palette[bi % palette.count])\"/>\n"
                s += "<text x=\"\(f(x + slot * 0.35))\" y=\"\(f(oy + panelH - h - 4))\" text-anchor=\"middle\" font-size=\"10\">\(escape(bar.note))</text>\n"
                s += "<text x=\"\(f(x + slot * 0.35))\" y=\"\(f(oy + panelH + 15))\" text-anchor=\"middle\" font-size=\"11\">\(escape(String(bar.label.prefix(14))))</text>\n"
            }
        }
        s += "<text transform=\"translate(16,\(f(top + panelH / 2))) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"
        return s + "</svg>\n"
    }
}
