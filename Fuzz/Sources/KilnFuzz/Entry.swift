import Foundation

/// libFuzzer's entry point: one input, one call of the loader named by KILN_FUZZ_TARGET. Typed
/// errors are the expected outcome for nearly every input; a crash, a hang or an allocation past
/// libFuzzer's limits is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = try? FuzzTarget.selected.run(Data(bytes: data, count: size))
    return 0
}
