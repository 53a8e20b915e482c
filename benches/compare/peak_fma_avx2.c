// FP32 FMA peak of an AVX2+FMA core (ymm), on one thread and on two at once: the yardstick for the
// GFLOP/s columns on machines without AVX-512.
// Build and run: gcc -O2 -mavx2 -mfma -pthread -o peak_fma_avx2 peak_fma_avx2.c && ./peak_fma_avx2
// 24 independent vfmadd231ps per iteration on 12 accumulators (latency 4 × 2 pipes covered).
#include <stdio.h>
#include <time.h>
#include <stdint.h>
#include <pthread.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define F(i) "vfmadd231ps %%ymm14,%%ymm15,%%ymm" #i "\n\t"
__attribute__((noinline)) void f256(uint64_t n){
  __asm__ volatile("vxorps %%ymm14,%%ymm14,%%ymm14\n\tvxorps %%ymm15,%%ymm15,%%ymm15\n\t"
   "1:\n\t" F(0)F(1)F(2)F(3)F(4)F(5)F(6)F(7)F(8)F(9)F(10)F(11) F(0)F(1)F(2)F(3)F(4)F(5)F(6)F(7)F(8)F(9)F(10)F(11) "dec %0\n\tjnz 1b\n\t":"+r"(n)::"xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11","xmm14","xmm15","cc");
}
static uint64_t M=50000000ULL;
static void* w(void*a){ double t=now(); f256(M); *(double*)a=now()-t; return 0;}
int main(){
  for(int rep=0;rep<5;rep++){
    double t=now(); f256(M); double d=now()-t; double g=(double)M*24*16/d/1e9;
    pthread_t th[2]; double dd[2];
    for(int i=0;i<2;i++) pthread_create(&th[i],0,w,&dd[i]);
    for(int i=0;i<2;i++) pthread_join(th[i],0);
    printf("1 core ymm FMA %.1f GFLOP/s | 2 cores %.1f + %.1f\n", g,(double)M*24*16/dd[0]/1e9,(double)M*24*16/dd[1]/1e9);
  }
}
