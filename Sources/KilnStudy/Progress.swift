import Foundation

/// Progress output: a redrawn bar on a terminal (epoch, batch, loss, img/s, ETA), plain log
/// lines otherwise (CI logs, pipes).
public final class ProgressReporter: @unchecked Sendable {
    public let interactive: Bool
    public var quiet = false

    public init(interactive: Bool = isatty(STDOUT_FILENO) != 0) { self.interactive = interactive }

    public func batch(
        _ label: String, epoch: Int, epochs: Int, batch: Int, batches: Int, loss: Double, imagesPerSecond: Double, eta: Double
    ) {
        guard interactive, !quiet else { return }
        let width = 24, done = batches == 0 ? width : width * batch / batches
        let bar = String(repeating: "█", count: done) + String(repeating: "·", count: width - done)
        write(
            String(
                format: "\r%@ epoch %d/%d [%@] %d/%d loss %.3f %.0f img/s ETA %@   ", label, epoch, epochs, bar, batch, batches,
                loss, imagesPerSecond, Self.duration(eta)))
    }

    public func line(_ text: String) {
        guard !quiet else { return }
        write((interactive ? "\r\u{1B}[K" : "") + text + "\n")
    }

    /// Unbuffered, so progress shows up at once in pipes and logs too.
    func write(_ text: String) { FileHandle.standardOutput.write(Data(text.utf8)) }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 60 ? "\(s / 60)m\(String(format: "%02d", s % 60))s" : "\(s)s"
    }
}
