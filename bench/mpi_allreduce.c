/* The yardstick for bench/collectives: MPI_Allreduce (sum, float, in place) from C, timed the way
 * src/bench/collectives.ts times every converge backend — 5 warm-up operations, then per-operation
 * times until rank 0 says stop (checked every 16 operations), median per size. Prints one JSON
 * line per size from each rank. Built and run by the benchmark: mpicc -O2 mpi_allreduce.c.
 * It sets the same mallopt as converge's binding, so the comparison is with C at its best. */
#include <malloc.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  /* as the converge binding does: Open MPI's per-operation 64 MiB buffer, kept instead of unmapped */
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  double seconds = argc > 1 ? atof(argv[1]) : 1.0;
  const long sizes[] = {4L << 10, 256L << 10, 4L << 20, 64L << 20};
  float *buffer = malloc(64L << 20);
  double *times = malloc(sizeof(double) * 20000);
  for (int s = 0; s < 4; s++) {
    int count = (int)(sizes[s] / 4);
    for (int i = 0; i < count; i++) buffer[i] = (float)(rank + 1);
    for (int i = 0; i < 5; i++) MPI_Allreduce(MPI_IN_PLACE, buffer, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    int n = 0, stop = 0;
    double started = MPI_Wtime();
    for (;;) {
      double t = MPI_Wtime();
      MPI_Allreduce(MPI_IN_PLACE, buffer, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      times[n++] = MPI_Wtime() - t;
      stop = rank == 0 && (MPI_Wtime() - started > seconds || n >= 20000);
      if (n % 16 == 0) {
        MPI_Bcast(&stop, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (stop) break;
      }
    }
    qsort(times, n, sizeof(double), compare);
    printf("{\"rank\":%d,\"bytes\":%ld,\"medianSeconds\":%.9f,\"ops\":%d}\n", rank, sizes[s], times[n / 2], n);
    fflush(stdout);
  }
  free(buffer);
  free(times);
  MPI_Finalize();
  return 0;
}
