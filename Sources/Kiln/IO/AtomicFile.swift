import Foundation

extension Data {
    /// Writes the bytes so that `url` holds either its old contents or all of the new ones, even
    /// if the process is killed midway: a temporary file beside it (same file system), flushed to
    /// disk, then renamed over it. (Foundation's `.atomic` stages in a folder of its own under
    /// /tmp, which it leaves behind, and cannot rename across file systems.)
    public func writeAtomically(to url: URL) throws {
        let folder = url.deletingLastPathComponent()
        let temporary = folder.appendingPathComponent(".\(url.lastPathComponent).partial-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw AtomicWriteError(file: url.path, detail: String(cString: strerror(errno))) }
        var failure: String?
        withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = String(cString: strerror(errno))
                    return
                }
                done += n
            }
            if fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        }
        close(fd)
        if failure == nil, rename(temporary.path, url.path) != 0 { failure = String(cString: strerror(errno)) }
        if let failure {
            unlink(temporary.path)
            throw AtomicWriteError(file: url.path, detail: failure)
        }
        // The rename itself reaches the disk with the folder's entry.
        let dir = open(folder.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            fsync(dir)
            close(dir)
        }
    }
}

public struct AtomicWriteError: Error, CustomStringConvertible {
    public let file: String
    public let detail: String
    public var description: String { "\(file): cannot write: \(detail)" }
}
