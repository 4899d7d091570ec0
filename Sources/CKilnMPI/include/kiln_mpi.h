// The few MPI calls data-parallel training makes, behind a C API that exists whether or not MPI
// was found at build time (kn_mpi_available() says which). Every call returns 0 or an MPI error
// code; kn_mpi_error_string describes one.
#ifndef KILN_MPI_H
#define KILN_MPI_H

#include <stdint.h>

/// 1 when this build has MPI (mpi.h and libmpi were found through pkg-config), else 0.
int kn_mpi_available(void);
/// MPI_Init_thread (MPI_THREAD_FUNNELED) with errors returned rather than fatal.
int kn_mpi_init(int *rank, int *size);
int kn_mpi_finalize(void);
/// Ends every process of the job (MPI_Abort); does not return.
void kn_mpi_abort(int code);
int kn_mpi_allreduce_sum_float(float *buffer, int64_t count);
int kn_mpi_allreduce_sum_double(double *buffer, int64_t count);
/// A non-blocking sum; kn_mpi_test polls it, kn_mpi_wait finishes it and releases *request (always call it once).
int kn_mpi_iallreduce_sum_float(float *buffer, int64_t count, void **request);
int kn_mpi_test(void *request, int *done);
int kn_mpi_wait(void *request);
int kn_mpi_broadcast(void *buffer, int64_t bytes, int root);
int kn_mpi_barrier(void);
void kn_mpi_error_string(int code, char *text, int capacity);

#endif
