#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int c,char**v){size_t chunk=1<<20; long total=atol(v[2])<<20; char*b=aligned_alloc(4096,chunk); memset(b,7,chunk);
int fd=open(v[1],O_WRONLY|O_CREAT,0644); double t=now(); double worst=0;
for(long off=0;off<total;off+=chunk){double s=now(); if(pwrite(fd,b,chunk,off)!=chunk){perror("w");return 1;} double d=now()-s; if(d>worst)worst=d;}
double e=now()-t; printf("%s: %.2f GB/s, worst 1 MiB pwrite %.2f ms\n",v[1],total/e/1e9,worst*1e3); close(fd);}
