// Small helpers to build the DOM safely (text is always set as text, never as HTML).

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, any> = {},
  ...children: (Node | string | null | undefined | false)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'html') {
      // Only the SVG shapes classify.ts builds from constants; never data.
      if (typeof v !== 'string' || !v.startsWith('<svg class="shape"')) throw new Error('html: SVG shapes only');
      el.innerHTML = v;
    }
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return el;
}

export function clear(el: Element): void {
  while (el.firstChild) el.firstChild.remove();
}

/** Says something to screen readers and shows it in the status line. */
export function announce(msg: string, kind: 'info' | 'error' = 'info'): void {
  const n = document.getElementById('notice');
  if (!n) return;
  n.textContent = msg;
  n.className = `notice ${kind}`;
}

/** A modal dialog asking for confirmation (and optionally a reason); resolves with the
 * reason, or null when cancelled. */
export function confirmDialog(opts: {
  title: string;
  message: string;
  confirm: string;
  cancel: string;
  reasonLabel?: string;
  danger?: boolean;
}): Promise<string | null> {
  return new Promise((resolve) => {
    const reason = opts.reasonLabel ? h('textarea', { id: 'dialog-reason', rows: '3', required: true }) : null;
    const err = h('p', { class: 'error', role: 'alert' });
    const dlg = h(
      'dialog',
      { class: 'dialog', 'aria-labelledby': 'dialog-title' },
      h('h2', { id: 'dialog-title' }, opts.title),
      h('p', {}, opts.message),
      reason ? h('label', { for: 'dialog-reason' }, opts.reasonLabel!) : null,
      reason,
      err,
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', onclick: () => done(null) }, opts.cancel),
        h(
          'button',
          {
            type: 'button',
            class: opts.danger ? 'danger' : 'primary',
            onclick: () => {
              const r = reason ? reason.value.trim() : '';
              if (reason && !r) {
                err.textContent = opts.reasonLabel ?? '';
                reason.focus();
                return;
              }
              done(r);
            },
          },
          opts.confirm,
        ),
      ),
    );
    const done = (r: string | null) => {
      dlg.close();
      dlg.remove();
      resolve(r);
    };
    dlg.addEventListener('cancel', (e) => {
      e.preventDefault();
      done(null);
    });
    document.body.append(dlg);
    dlg.showModal();
    (reason ?? dlg.querySelector('button'))?.focus();
  });
}
