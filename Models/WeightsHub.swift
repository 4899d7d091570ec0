import Crypto
import Foundation
import Kiln

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Published weights in torch hub's cache, fetched the way `torch.hub.load_state_dict_from_url`
/// does: `$TORCH_HOME/hub/checkpoints/<file>` (default `~/.cache/torch`), so a cache PyTorch
/// filled is reused and vice versa; the SHA-256 prefix in the file name is verified; the transfer
/// goes to a temporary file in the same folder, renamed into place only when complete and
/// verified, so a partial download never looks complete.
public struct WeightsHub: Sendable {
    /// Bytes received and expected (nil when the server does not say).
    public typealias Progress = @Sendable (_ received: Int64, _ expected: Int64?) -> Void

    /// The cache folder (torch hub's `checkpoints`).
    public var checkpointsDirectory: URL
    /// A folder URL to download from instead of the published one (a mirror, a test server).
    public var mirror: URL?

    public init(checkpointsDirectory: URL, mirror: URL? = nil) {
        (self.checkpointsDirectory, self.mirror) = (checkpointsDirectory, mirror)
    }

    /// torch hub's cache (`$TORCH_HOME/hub/checkpoints`, else `$XDG_CACHE_HOME/torch/…`, else
    /// `~/.cache/torch/…`) and `KILN_WEIGHTS_URL` as the mirror.
    public static var environment: WeightsHub {
        let env = ProcessInfo.processInfo.environment
        let torchHome =
            env["TORCH_HOME"].map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: env["XDG_CACHE_HOME"] ?? (NSHomeDirectory() + "/.cache")).appendingPathComponent("torch")
        return WeightsHub(
            checkpointsDirectory: torchHome.appendingPathComponent("hub/checkpoints"),
            mirror: env["KILN_WEIGHTS_URL"].flatMap(URL.init(string:)))
    }

    /// Where `weights` lives in the cache.
    public func cachedFile(_ weights: PublishedWeights) -> URL { checkpointsDirectory.appendingPathComponent(weights.fileName) }

    /// Where `weights` is downloaded from: the published URL, or `<mirror>/<file>`.
    public func downloadURL(_ weights: PublishedWeights) -> URL { mirror?.appendingPathComponent(weights.fileName) ?? weights.url }

    /// The cached file, downloaded first when absent. A cached file is trusted as torch hub
    /// trusts it (its hash was checked when it was written).
    public func fetch(_ weights: PublishedWeights, progress: Progress? = nil) throws -> URL {
        let file = cachedFile(weights)
        if FileManager.default.fileExists(atPath: file.path) { return file }
        try download(weights, to: file, progress: progress)
        return file
    }

    /// Downloads `weights` to `file`, replacing nothing until the transfer is complete and its
    /// hash verified.
    public func download(_ weights: PublishedWeights, to file: URL, progress: Progress? = nil) throws {
        let url = downloadURL(weights)
        let folder = file.deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw DownloadError(url: url, cache: file, problem: .cannotWrite("\(error.localizedDescription)"))
        }
        let partial = folder.appendingPathComponent(".\(weights.fileName).\(ProcessInfo.processInfo.processIdentifier).partial")
        defer { try? FileManager.default.removeItem(at: partial) }
        let digest = try Transfer(url: url, cache: file, destination: partial, progress: progress).run()
        guard digest.hasPrefix(weights.sha256Prefix.lowercased()) else {
            throw DownloadError(url: url, cache: file, problem: .hashMismatch(expected: weights.sha256Prefix, actual: digest))
        }
        guard rename(partial.path, file.path) == 0 else {
            throw DownloadError(url: url, cache: file, problem: .cannotWrite(String(cString: strerror(errno))))
        }
    }

    /// A progress bar on standard error (one line at the end when it is not a terminal).
    public static func terminalProgress(_ weights: PublishedWeights) -> Progress {
        let bar = ProgressBar(label: weights.fileName)
        return { received, expected in bar.update(received, expected) }
    }
}

/// Why published weights could not be had, with what to do about it.
public struct DownloadError: Error, CustomStringConvertible {
    public enum Problem: Sendable {
        /// No connection (offline, name not resolved, refused, timed out): the transport's message.
        case unreachable(String)
        case httpStatus(Int)
        case truncated(received: Int64, expected: Int64)
        case hashMismatch(expected: String, actual: String)
        case cannotWrite(String)
    }

    public let url: URL
    public let cache: URL
    public let problem: Problem

    public var description: String {
        let what: String
        switch problem {
        case let .unreachable(detail): what = "cannot reach \(url.absoluteString) (\(detail))"
        case let .httpStatus(status): what = "\(url.absoluteString) answered HTTP \(status)"
        case let .truncated(received, expected):
            what = "the transfer from \(url.absoluteString) ended after \(received) of \(expected) bytes"
        case let .hashMismatch(expected, actual):
            what =
                "\(url.absoluteString) sent a file whose SHA-256 \(actual.prefix(16))… does not start with \(expected) (corrupt or not the published file)"
        case let .cannotWrite(detail): return "cannot write the weights cache \(cache.deletingLastPathComponent().path): \(detail)"
        }
        return "\(what); nothing was written. Without network, download \(url.absoluteString) elsewhere and copy it to \(cache.path)"
    }
}

/// One HTTP(S) GET streamed to a file, hashed on the way.
private final class Transfer: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    let url: URL, cache: URL, destination: URL
    let progress: WeightsHub.Progress?
    private let done = DispatchSemaphore(value: 0)
    private var output: FileHandle?
    private var hasher = SHA256()
    private var received: Int64 = 0
    private var expected: Int64?
    private var failure: DownloadError?

    init(url: URL, cache: URL, destination: URL, progress: WeightsHub.Progress?) {
        (self.url, self.cache, self.destination, self.progress) = (url, cache, destination, progress)
    }

    /// Runs the transfer; returns the hex SHA-256 of the bytes written.
    func run() throws -> String {
        guard FileManager.default.createFile(atPath: destination.path, contents: nil),
            let handle = FileHandle(forWritingAtPath: destination.path)
        else { throw DownloadError(url: url, cache: cache, problem: .cannotWrite("cannot create \(destination.path)")) }
        output = handle
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 20  // seconds without data
        let session = URLSession(configuration: configuration, delegate: self, delegateQueue: nil)
        session.dataTask(with: url).resume()
        done.wait()
        session.finishTasksAndInvalidate()
        try? handle.synchronize()
        try? handle.close()
        if let failure { throw failure }
        if let expected, received != expected {
            throw DownloadError(url: url, cache: cache, problem: .truncated(received: received, expected: expected))
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    func urlSession(
        _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
        completionHandler: @escaping @Sendable (URLSession.ResponseDisposition) -> Void
    ) {
        if let http = response as? HTTPURLResponse, http.statusCode != 200 {
            failure = DownloadError(url: url, cache: cache, problem: .httpStatus(http.statusCode))
            completionHandler(.cancel)
            return
        }
        expected = response.expectedContentLength >= 0 ? response.expectedContentLength : nil
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        guard failure == nil else { return }
        do {
            try output?.write(contentsOf: data)
        } catch {
            failure = DownloadError(url: url, cache: cache, problem: .cannotWrite(error.localizedDescription))
            dataTask.cancel()
            return
        }
        hasher.update(data: data)
        received += Int64(data.count)
        progress?(received, expected)
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        if failure == nil, let error {
            if let expected, received > 0, received < expected {
                failure = DownloadError(url: url, cache: cache, problem: .truncated(received: received, expected: expected))
            } else {
                failure = DownloadError(url: url, cache: cache, problem: .unreachable(error.localizedDescription))
            }
        }
        done.signal()
    }
}

/// `resnet18-f37072fd.pth  23.1 / 44.7 MB  52% [#########         ]`, redrawn at most 10× a second.
private final class ProgressBar: @unchecked Sendable {
    let label: String
    private let isTerminal = isatty(STDERR_FILENO) != 0
    private var lastDraw = Date.distantPast
    private let lock = NSLock()

    init(label: String) { self.label = label }

    func update(_ received: Int64, _ expected: Int64?) {
        lock.lock()
        defer { lock.unlock() }
        let finished = expected.map { received >= $0 } ?? false
        guard finished || Date().timeIntervalSince(lastDraw) >= 0.1 else { return }
        lastDraw = Date()
        let mb = { (bytes: Int64) in String(format: "%.1f", Double(bytes) / 1e6) }
        var line = "\(label)  \(mb(received))"
        if let expected, expected > 0 {
            let share = Double(received) / Double(expected)
            let filled = Int(share * 24)
            line +=
                " / \(mb(expected)) MB  \(Int(share * 100))% [" + String(repeating: "#", count: filled)
                + String(repeating: " ", count: 24 - filled) + "]"
        } else {
            line += " MB"
        }
        if isTerminal {
            FileHandle.standardError.write(Data(("\r" + line + (finished ? "\n" : "")).utf8))
        } else if finished {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }
}
