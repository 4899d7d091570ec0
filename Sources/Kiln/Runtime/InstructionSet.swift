import CKernels

/// The instruction set Kiln's C kernels run with. Every kernel is built once per path and one is
/// chosen at start-up (`preferred`); `KILN_ISA=portable|avx2|avx512` forces one.
public enum InstructionSet: Int32, CaseIterable, Sendable, CustomStringConvertible {
    /// The architecture's baseline (x86-64: SSE2; aarch64: NEON).
    case portable = 0
    /// AVX2 + FMA.
    case avx2 = 1
    /// AVX-512 F/BW/DQ/VL.
    case avx512 = 2

    public var description: String { String(cString: kn_isa_name(rawValue)) }

    /// The paths this build can run on this CPU, portable first.
    public static var supported: [InstructionSet] { allCases.filter { kn_isa_supported($0.rawValue) != 0 } }

    /// The path chosen when `KILN_ISA` does not say: the widest the CPU supports.
    public static var preferred: InstructionSet { InstructionSet(rawValue: kn_isa_default()) ?? .portable }

    /// The process's path (not to be changed while kernels run on other threads).
    public static var active: InstructionSet {
        get { InstructionSet(rawValue: kn_isa()) ?? .portable }
        set { precondition(kn_set_isa(newValue.rawValue) == 0, "\(newValue) is not supported on this CPU") }
    }

    /// Why `KILN_ISA` was not followed (an unknown name, or a path this CPU lacks), or nil.
    public static var requestProblem: String? { kn_isa_request_problem().map { String(cString: $0) } }

    /// Runs `body` with the kernels called from this thread on `isa` (tests compare the paths
    /// side by side this way without touching other threads). Returns nil when unsupported.
    public static func onThisThread<T>(_ isa: InstructionSet, _ body: () throws -> T) rethrows -> T? {
        guard kn_set_thread_isa(isa.rawValue) == 0 else { return nil }
        defer { kn_set_thread_isa(-1) }
        return try body()
    }
}
