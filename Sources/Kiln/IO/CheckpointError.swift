/// A weight file could not be read or written; names the file and what is wrong with it.
public struct CheckpointError: Error, CustomStringConvertible {
    public let file: String
    public let detail: String
    public init(file: String, detail: String) {
        self.file = file
        self.detail = detail
    }
    public var description: String { "\(file): \(detail)" }
}
