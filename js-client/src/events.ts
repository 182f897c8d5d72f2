// Token events: the agent's `pkcs11.slotEvent` notifications, as listeners of a Pkcs11 object.

import type { RestException } from "./errors.js";
import { METHODS, type SlotEvent, type SlotEventNotification } from "./protocol.js";
import type { Connection } from "./transport.js";

/** A token inserted into or removed from a slot of the Pkcs11 object's library. */
export type TokenEvent = SlotEvent;

/** Told of each token event. */
export type TokenEventListener = (event: TokenEvent) => void;

export interface TokenEventOptions {
  /**
   * Told when the client cannot (re)subscribe: the agent is not running (it retries, and says
   * so each time), or refused (e.g. BUSY: too many subscriptions on this connection).
   */
  onError?: (error: RestException) => void;
}

/** The notification the agent sends for each event. */
export const SLOT_EVENT = "pkcs11.slotEvent";

/** How long the client waits before subscribing again after the agent went away, at most. */
export const RESUBSCRIBE_MAX_DELAY_MS = 10_000;
const RESUBSCRIBE_FIRST_DELAY_MS = 500;

interface Listening {
  listener: TokenEventListener;
  onError: ((error: RestException) => void) | undefined;
}

/**
 * One subscription of one Pkcs11 object, shared by its listeners: subscribed when the first
 * listener comes, unsubscribed when the last one leaves, and subscribed again (with a growing
 * delay) after the connection closed, e.g. when the agent restarts.
 */
export class TokenEventFeed {
  private readonly listeners = new Set<Listening>();
  /** The subscription, once the agent answered. */
  private subscription: number | null = null;
  /** Whether a subscribe call is on its way. */
  private subscribing = false;
  /** Events that arrived while the subscribe call was on its way (their id is not known yet). */
  private early: SlotEventNotification[] = [];
  private retry: ReturnType<typeof setTimeout> | undefined;
  private delay = RESUBSCRIBE_FIRST_DELAY_MS;
  private stopNotifications: (() => void) | null = null;
  private stopClose: (() => void) | null = null;

  constructor(
    private readonly connection: Connection,
    private readonly params: () => Record<string, unknown>,
    private readonly timeout: number,
  ) {}

  /** Add a listener; returns the function that removes it. */
  add(listener: TokenEventListener, options: TokenEventOptions = {}): () => void {
    const entry: Listening = { listener, onError: options.onError };
    this.listeners.add(entry);
    if (this.listeners.size === 1) this.start();
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      this.listeners.delete(entry);
      if (this.listeners.size === 0) this.stop();
    };
  }

  private start(): void {
    this.stopNotifications = this.connection.onNotification(SLOT_EVENT, (params) => this.notified(params));
    this.stopClose = this.connection.onClose(() => {
      // The agent went away (or restarted): its subscriptions went with the connection.
      this.subscription = null;
      if (this.listeners.size > 0) this.later();
    });
    this.subscribe();
  }

  private stop(): void {
    clearTimeout(this.retry);
    this.retry = undefined;
    this.stopNotifications?.();
    this.stopClose?.();
    this.stopNotifications = this.stopClose = null;
    const subscription = this.subscription;
    this.subscription = null;
    this.early = [];
    if (subscription !== null && this.connection.isOpen) {
      this.connection
        .call(METHODS.unsubscribeSlotEvents, { subscription }, this.timeout)
        .catch(() => undefined);
    }
  }

  private subscribe(): void {
    if (this.subscribing || this.subscription !== null || this.listeners.size === 0) return;
    this.subscribing = true;
    this.connection.call(METHODS.subscribeSlotEvents, this.params(), this.timeout).then(
      (id) => {
        this.subscribing = false;
        if (this.listeners.size === 0) {
          // Everyone left meanwhile.
          this.connection.call(METHODS.unsubscribeSlotEvents, { subscription: id }, this.timeout).catch(() => undefined);
          return;
        }
        this.subscription = id as number;
        this.delay = RESUBSCRIBE_FIRST_DELAY_MS;
        const early = this.early;
        this.early = [];
        for (const n of early) this.notified(n);
      },
      (error: RestException) => {
        this.subscribing = false;
        this.early = [];
        for (const { onError } of [...this.listeners]) {
          try {
            onError?.(error);
          } catch {
            // the page's handler must not stop the retries
          }
        }
        if (this.listeners.size > 0 && error.reason === "AGENT_UNAVAILABLE") this.later();
      },
    );
  }

  /** Subscribe again after a delay that grows up to RESUBSCRIBE_MAX_DELAY_MS. */
  private later(): void {
    if (this.retry !== undefined) return;
    const delay = this.delay;
    this.delay = Math.min(this.delay * 2, RESUBSCRIBE_MAX_DELAY_MS);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.subscribe();
    }, delay);
  }

  private notified(params: unknown): void {
    if (typeof params !== "object" || params === null) return;
    const n = params as SlotEventNotification;
    if (this.subscription === null) {
      // Perhaps ours, sent before the answer to the subscribe call arrived.
      if (this.subscribing && this.early.length < 64) this.early.push(n);
      return;
    }
    if (n.subscription !== this.subscription || typeof n.result !== "object" || n.result === null) return;
    for (const { listener } of [...this.listeners]) {
      try {
        listener(n.result);
      } catch (error) {
        // Report it as uncaught, without stopping the other listeners.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
