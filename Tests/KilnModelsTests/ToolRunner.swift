import Foundation
import Testing

/// Runs one of the package's command-line tools, built in the test binary's configuration (by
/// `swift build`, as `make test` does), optionally under an address-space limit (`prlimit --as`); returns its exit
/// status and standard error.
func runTool(_ tool: String, _ args: [String], memoryLimit: Int? = nil, environment: [String: String] = [:]) throws -> (Int32, String) {
    let binary = builtToolsFolder.appendingPathComponent(tool)
    guard FileManager.default.fileExists(atPath: binary.path) else {
        Issue.record("\(tool) is not built at \(binary.path): build it first (`make test` does)")
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
    if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let pipe = Pipe()
    process.standardError = pipe
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let message = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, message)
}

/// The folder of the package's built tools: the one holding this test binary
/// (.build/<triple>/<debug|release>), so tests run the tools of the same configuration.
let builtToolsFolder: URL = {
    let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var folder = runner.deletingLastPathComponent()
    if folder.pathExtension == "xctest" || folder.lastPathComponent == "MacOS" {  // bundle layouts
        while folder.pathExtension != "xctest" && folder.path != "/" { folder = folder.deletingLastPathComponent() }
        folder = folder.deletingLastPathComponent()
    }
    return folder
}()
