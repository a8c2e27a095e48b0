/*
 * worker.c - a fixed pool of threads for blocking work.
 *
 * Jobs go into a mutex-protected FIFO; a finished job moves to a done
 * list and wakes the loop through event_active() on one persistent event
 * (libevent's thread-safe wake-up), whose callback runs the done
 * functions on the loop thread. Owns the threads, both lists and every
 * job record.
 */
#include "worker.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>

struct job {
	moat_work_fn work, done;
	void *arg;
	struct job *next;
};

struct moat_worker_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *head, *tail;	/* waiting to run */
	struct job *done_head, *done_tail;	/* finished, done() pending */
	int stopping;
	int nthreads;
	pthread_t *threads;
	struct event *wake;
};

static void push(struct job **head, struct job **tail, struct job *j)
{
	j->next = NULL;
	if (*tail)
		(*tail)->next = j;
	else
		*head = j;
	*tail = j;
}

static void *worker_main(void *p)
{
	struct moat_worker_pool *pool = p;

	pthread_mutex_lock(&pool->mu);
	for (;;) {
		while (!pool->head && !pool->stopping)
			pthread_cond_wait(&pool->cv, &pool->mu);
		if (!pool->head)
			break;
		struct job *j = pool->head;
		pool->head = j->next;
		if (!pool->head)
			pool->tail = NULL;
		pthread_mutex_unlock(&pool->mu);
		j->work(j->arg);
		pthread_mutex_lock(&pool->mu);
		push(&pool->done_head, &pool->done_tail, j);
		event_active(pool->wake, EV_READ, 0);
	}
	pthread_mutex_unlock(&pool->mu);
	return NULL;
}

static void run_done(evutil_socket_t fd, short what, void *p)
{
	struct moat_worker_pool *pool = p;
	struct job *list;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&pool->mu);
	list = pool->done_head;
	pool->done_head = pool->done_tail = NULL;
	pthread_mutex_unlock(&pool->mu);
	while (list) {
		struct job *next = list->next;
		if (list->done)
			list->done(list->arg);
		free(list);
		list = next;
	}
}

struct moat_worker_pool *moat_worker_pool_new(struct event_base *base, int nthreads)
{
	struct moat_worker_pool *pool = calloc(1, sizeof(*pool));
	if (!pool)
		return NULL;
	pthread_mutex_init(&pool->mu, NULL);
	pthread_cond_init(&pool->cv, NULL);
	pool->wake = event_new(base, -1, EV_PERSIST, run_done, pool);
	pool->threads = calloc((size_t)nthreads, sizeof(pthread_t));
	if (!pool->wake || !pool->threads)
		goto fail;
	for (; pool->nthreads < nthreads; pool->nthreads++)
		if (pthread_create(&pool->threads[pool->nthreads], NULL, worker_main, pool) != 0)
			goto fail;
	return pool;
fail:
	moat_worker_pool_free(pool);
	return NULL;
}

int moat_worker_submit(struct moat_worker_pool *pool, moat_work_fn work,
		       moat_work_fn done, void *arg)
{
	struct job *j = malloc(sizeof(*j));
	if (!j)
		return -1;
	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&pool->mu);
	push(&pool->head, &pool->tail, j);
	pthread_cond_signal(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
	return 0;
}

void moat_worker_pool_free(struct moat_worker_pool *pool)
{
	if (!pool)
		return;
	pthread_mutex_lock(&pool->mu);
	pool->stopping = 1;
	pthread_cond_broadcast(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
	for (int i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	if (pool->wake) {
		run_done(-1, 0, pool);
		event_free(pool->wake);
	}
	free(pool->threads);
	pthread_cond_destroy(&pool->cv);
	pthread_mutex_destroy(&pool->mu);
	free(pool);
}
