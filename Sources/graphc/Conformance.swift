import ArgumentParser
import Foundation
import Kiln

struct Conformance: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "onnx-conformance",
        abstract:
            "Run ONNX's backend test data (the onnx wheel's onnx/backend/test/data, or $ONNX_TEST_DATA) through Kiln: one line per case, then a table of unsupported ops."
    )

    @Argument(help: "Folders to search for cases (default: $ONNX_TEST_DATA).")
    var folders: [String] = []

    @Option(help: "Only cases whose name contains this text.")
    var filter: String?

    func run() throws {
        var roots = folders
        if roots.isEmpty, let env = ProcessInfo.processInfo.environment["ONNX_TEST_DATA"] { roots = [env] }
        guard !roots.isEmpty else { throw ValidationError("give a folder of ONNX test data or set ONNX_TEST_DATA") }
        var passed = 0, failed = 0
        var unsupported: [String: [String]] = [:]
        for root in roots {
            let cases = ONNXConformance.cases(in: URL(fileURLWithPath: root)).filter { filter == nil || $0.name.contains(filter!) }
            for test in cases {
                switch ONNXConformance.run(test) {
                case let .passed(worst):
                    passed += 1
                    print("PASS         \(test.name)  (max relative error \(worst))")
                case let .failed(detail):
                    failed += 1
                    print("FAIL         \(test.name): \(detail)")
                case let .unsupported(op, detail):
                    unsupported[op, default: []].append(test.name)
                    print("UNSUPPORTED  \(test.name): \(op): \(detail)")
                }
            }
        }
        let skipped = unsupported.values.reduce(0) { $0 + $1.count }
        print("\ncases: \(passed + failed + skipped), passed: \(passed), failed: \(failed), unsupported: \(skipped)")
        for (op, names) in unsupported.sorted(by: { $0.value.count > $1.value.count }) {
            print("  \(op): \(names.count) (\(names.joined(separator: ", ")))")
        }
        if failed > 0 { throw ExitCode(1) }
    }
}
