import CKernels

public enum Threads {
    /// Threads for OpenMP kernels and OpenBLAS. Same count + same seed ⇒ bitwise-identical results.
    public static var count: Int {
        get { Int(kn_threads()) }
        set { kn_set_threads(Int32(newValue)) }
    }
}
