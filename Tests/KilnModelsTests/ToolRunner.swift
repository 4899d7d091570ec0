import Foundation
import Testing

/// Runs a debug build of one of the package's command-line tools (built by `swift build`, as
/// `make test` does), optionally under an address-space limit (`prlimit --as`); returns its exit
/// status and standard error.
func runTool(_ tool: String, _ args: [String], memoryLimit: Int? = nil) throws -> (Int32, String) {
    let binary = WeightsTests.packageRoot.appendingPathComponent(".build/debug/\(tool)")
    guard FileManager.default.fileExists(atPath: binary.path) else {
        Issue.record("\(tool) is not built at \(binary.path): run `swift build` first (`make test` does)")
        return (-1, "not built")
    }
    let process = Process()
    if let memoryLimit {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
        process.arguments = ["--as=\(memoryLimit)", binary.path] + args
    } else {
        process.executableURL = binary
        process.arguments = args
    }
    let pipe = Pipe()
    process.standardError = pipe
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let message = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, message)
}
