// The /account page: sign in, then see and change one's broker API keys.
//
// Session model: the access token lives only in the `session` variable below (never in storage
// or a URL). The refresh token is kept by the browser in the service's HttpOnly cookie (scoped to
// /auth, unreadable from this script), so a reload renews the session through /auth/refresh, and
// signing out calls /auth/logout, which ends the session on the server. An expired access token
// is renewed once; when that fails too, the page returns to the sign-in form with a message. Text is set with textContent only (broker names come from
// the server). See docs/account-page.md.
(function () {
  'use strict';

  // Cards always shown, then any other stored broker.
  var KNOWN_BROKERS = [
    { id: 'binance', name: 'Binance' },
    { id: 'ibkr', name: 'Interactive Brokers' }
  ];
  // How people call the brokers the service knows (the same list as the service's).
  var DISPLAY_NAMES = {
    binance: 'Binance',
    kraken: 'Kraken',
    alpaca: 'Alpaca',
    ibkr: 'Interactive Brokers',
    'interactive-brokers': 'Interactive Brokers',
    interactivebrokers: 'Interactive Brokers',
    coinbase: 'Coinbase',
    bitstamp: 'Bitstamp'
  };
  // Brokers the connection test has an adapter for: the button is offered only for them.
  var TESTABLE_BROKERS = ['binance', 'kraken', 'alpaca'];
  var MAX_BROKER_CHARS = 64;
  var TEST_ROUTE = '/users/me/api-credentials/test';
  var CREDENTIALS_ROUTE = '/users/me/broker-credentials';

  var MESSAGES = {
    en: {
      skip: 'Skip to content',
      title: 'Broker API keys',
      signOut: 'Sign out',
      signInTitle: 'Sign in',
      email: 'E-mail',
      password: 'Password',
      signIn: 'Sign in',
      registerTitle: 'Create an account',
      passwordRules: 'At least 12 characters, with an upper-case letter, a lower-case letter, a digit and a symbol.',
      register: 'Create account',
      tokenTitle: 'Sign in with a platform token',
      tokenHint: 'Sign-in is handled by the platform. Paste an access token issued by it.',
      accessToken: 'Access token',
      useToken: 'Continue',
      credentialsTitle: 'Your broker API keys',
      credentialsHint: 'Keys are stored encrypted and are never shown again: only their last four characters are. Leave a field empty to keep the stored value.',
      addBrokerTitle: 'Add another broker',
      brokerId: 'Broker identifier',
      addBroker: 'Add',
      brokerIdHint: 'For example kraken or alpaca.',
      apiKey: 'API key',
      apiSecret: 'API secret',
      updatedAt: 'Last update',
      lastTest: 'Last test',
      newKey: 'New API key',
      newSecret: 'New API secret',
      save: 'Save',
      test: 'Test connection',
      clearKey: 'Clear key',
      clearSecret: 'Clear secret',
      'delete': 'Delete',
      tradingSwitch: 'Allow the platform to trade with this key',
      tradingHint: 'The platform signs orders with this key; the secret never leaves the service. Changing the key turns this off.',
      tradingOn: 'Trading allowed',
      tradingOff: 'Trading not allowed',
      tradingEnabled: '{broker}: the platform may now trade with this key.',
      tradingDisabled: '{broker}: the platform may no longer trade with this key.',
      tradingReset: 'Trading with this key is off again: allow it again if you wish.',
      switchTo: 'Afficher en français',
      switchLabel: 'Français',
      switchLang: 'fr',
      signedInAs: 'Signed in as {email}',
      notSet: 'Not set',
      unreadable: 'Unreadable',
      never: 'Never',
      notSaved: 'Not saved yet',
      configured: 'Configured',
      partial: 'Incomplete',
      empty: 'Not configured',
      problem: 'Needs attention',
      undecryptable: 'A stored value of this broker cannot be decrypted (the encryption key changed or the data was altered). Replace the key and secret, or delete them.',
      testOk: 'Connection OK',
      testUnauthorized: 'Rejected by the broker',
      testNetwork: 'Broker unreachable',
      testMissing: 'Key or secret missing',
      storedUnavailable: 'Stored — unavailable',
      keyOutageBadge: 'Unavailable',
      testedAt: '{status}, {date}',
      nothingToSave: 'Enter a new API key or secret first.',
      saved: '{broker}: saved.',
      keyCleared: '{broker}: API key cleared.',
      secretCleared: '{broker}: API secret cleared.',
      deleted: '{broker}: deleted.',
      confirmClearKey: 'Clear the API key of {broker}?',
      confirmClearSecret: 'Clear the API secret of {broker}?',
      confirmDelete: 'Delete the API key and secret of {broker}?',
      testRunning: '{broker}: testing the connection…',
      testResult: '{broker}: {message}',
      testOkMessage: 'connection established.',
      testUnauthorizedMessage: 'the broker rejected the API key or secret.',
      testNetworkMessage: 'the broker could not be reached, or automated checks are not available for it.',
      brokerAdded: '{broker}: enter its API key and secret, then save.',
      brokerExists: '{broker} is already listed.',
      brokerInvalid: 'Enter a broker identifier of at most 64 characters.',
      signedOut: 'You are signed out.',
      welcome: 'Welcome! Your account is ready.',
      expired: 'Your session has expired. Please sign in again.',
      invalidLogin: 'Invalid e-mail or password.',
      emailTaken: 'This e-mail address is already registered. Sign in instead.',
      passwordPolicy: 'The password does not follow the rules: {detail}',
      tooMany: 'Too many attempts. Try again in {seconds} s.',
      keyNotConfigured: 'The service cannot store or read broker keys right now: its encryption key is not configured (Broker credentials encryption key is not configured). Please contact the operator.',
      unavailable: 'The service is temporarily unavailable. Try again in a moment.',
      network: 'The service cannot be reached. Check your connection and try again.',
      forbidden: 'Your account is not allowed to do this ({detail}).',
      failed: 'The request failed: {detail}',
      requestId: '(request id {id})',
      loading: 'Loading…'
    },
    fr: {
      skip: 'Aller au contenu',
      title: 'Clés API des brokers',
      signOut: 'Se déconnecter',
      signInTitle: 'Connexion',
      email: 'Adresse e-mail',
      password: 'Mot de passe',
      signIn: 'Se connecter',
      registerTitle: 'Créer un compte',
      passwordRules: 'Au moins 12 caractères, dont une majuscule, une minuscule, un chiffre et un symbole.',
      register: 'Créer le compte',
      tokenTitle: 'Connexion avec un jeton de la plateforme',
      tokenHint: 'La connexion est gérée par la plateforme. Collez un jeton d’accès qu’elle a émis.',
      accessToken: 'Jeton d’accès',
      useToken: 'Continuer',
      credentialsTitle: 'Vos clés API de brokers',
      credentialsHint: 'Les clés sont stockées chiffrées et ne sont plus jamais affichées : seuls leurs quatre derniers caractères le sont. Laissez un champ vide pour garder la valeur enregistrée.',
      addBrokerTitle: 'Ajouter un autre broker',
      brokerId: 'Identifiant du broker',
      addBroker: 'Ajouter',
      brokerIdHint: 'Par exemple kraken ou alpaca.',
      apiKey: 'Clé API',
      apiSecret: 'Secret API',
      updatedAt: 'Dernière modification',
      lastTest: 'Dernier test',
      newKey: 'Nouvelle clé API',
      newSecret: 'Nouveau secret API',
      save: 'Enregistrer',
      test: 'Tester la connexion',
      clearKey: 'Effacer la clé',
      clearSecret: 'Effacer le secret',
      'delete': 'Supprimer',
      tradingSwitch: 'Autoriser la plateforme à trader avec cette clé',
      tradingHint: 'La plateforme signe les ordres avec cette clé ; le secret ne quitte jamais le service. Changer la clé désactive cette autorisation.',
      tradingOn: 'Trading autorisé',
      tradingOff: 'Trading non autorisé',
      tradingEnabled: '{broker} : la plateforme peut désormais trader avec cette clé.',
      tradingDisabled: '{broker} : la plateforme ne peut plus trader avec cette clé.',
      tradingReset: 'Le trading avec cette clé est de nouveau désactivé : autorisez-le à nouveau si vous le souhaitez.',
      switchTo: 'Switch to English',
      switchLabel: 'English',
      switchLang: 'en',
      signedInAs: 'Connecté en tant que {email}',
      notSet: 'Non renseigné',
      unreadable: 'Illisible',
      never: 'Jamais',
      notSaved: 'Pas encore enregistré',
      configured: 'Configuré',
      partial: 'Incomplet',
      empty: 'Non configuré',
      problem: 'À vérifier',
      undecryptable: 'Une valeur enregistrée pour ce broker ne peut pas être déchiffrée (la clé de chiffrement a changé ou les données ont été modifiées). Remplacez la clé et le secret, ou supprimez-les.',
      testOk: 'Connexion réussie',
      testUnauthorized: 'Refusée par le broker',
      testNetwork: 'Broker injoignable',
      testMissing: 'Clé ou secret manquant',
      storedUnavailable: 'Enregistrée — indisponible',
      keyOutageBadge: 'Indisponible',
      testedAt: '{status}, {date}',
      nothingToSave: 'Saisissez d’abord une nouvelle clé ou un nouveau secret.',
      saved: '{broker} : enregistré.',
      keyCleared: '{broker} : clé API effacée.',
      secretCleared: '{broker} : secret API effacé.',
      deleted: '{broker} : supprimé.',
      confirmClearKey: 'Effacer la clé API de {broker} ?',
      confirmClearSecret: 'Effacer le secret API de {broker} ?',
      confirmDelete: 'Supprimer la clé et le secret API de {broker} ?',
      testRunning: '{broker} : test de la connexion…',
      testResult: '{broker} : {message}',
      brokerAdded: '{broker} : saisissez sa clé et son secret API, puis enregistrez.',
      brokerExists: '{broker} est déjà dans la liste.',
      brokerInvalid: 'Saisissez un identifiant de broker de 64 caractères au plus.',
      signedOut: 'Vous êtes déconnecté.',
      welcome: 'Bienvenue ! Votre compte est prêt.',
      expired: 'Votre session a expiré. Veuillez vous reconnecter.',
      invalidLogin: 'Adresse e-mail ou mot de passe incorrect.',
      emailTaken: 'Cette adresse e-mail est déjà enregistrée. Connectez-vous.',
      passwordPolicy: 'Le mot de passe doit comporter au moins 12 caractères, dont une majuscule, une minuscule, un chiffre et un symbole.',
      tooMany: 'Trop de tentatives. Réessayez dans {seconds} s.',
      keyNotConfigured: 'Le service ne peut pas enregistrer ni lire les clés des brokers pour le moment : sa clé de chiffrement n’est pas configurée (Broker credentials encryption key is not configured). Contactez l’exploitant.',
      unavailable: 'Le service est momentanément indisponible. Réessayez dans un instant.',
      network: 'Le service est injoignable. Vérifiez votre connexion et réessayez.',
      forbidden: 'Votre compte n’a pas le droit de faire cela ({detail}).',
      failed: 'La requête a échoué : {detail}',
      requestId: '(identifiant de requête {id})',
      loading: 'Chargement…'
    }
  };

  // ---- state (memory only) ----
  var session = { access: null, renewable: false, email: null };
  var generation = 0; // bumped on every sign-in and sign-out: a late renewal is ignored
  var lang = pickLanguage();
  var credentials = []; // last list answered by the server
  var extraBrokers = []; // custom brokers added on the page, not stored yet
  var tradingPending = {}; // broker -> a change of its trading consent is on its way
  var testAvailable = false;
  var keyOutage = false; // the last list was a key outage: cards are read-only
  var embeddedSignIn = true;
  var refreshing = null;

  function pickLanguage() {
    var wanted = (navigator.languages && navigator.languages[0]) || navigator.language || 'en';
    return String(wanted).toLowerCase().indexOf('fr') === 0 ? 'fr' : 'en';
  }

  function t(key, values) {
    var text = MESSAGES[lang][key] || MESSAGES.en[key] || key;
    return text.replace(/\{(\w+)\}/g, function (_, name) {
      return values && values[name] !== undefined ? String(values[name]) : '';
    });
  }

  function $(id) {
    return document.getElementById(id);
  }

  // ---- messages (one live region) ----
  function say(kind, text) {
    var box = $('message');
    box.textContent = text;
    box.className = 'message ' + kind;
    box.hidden = !text;
  }

  function clearMessage() {
    say('info', '');
  }

  // ---- HTTP ----
  function ApiError(status, body, retryAfter) {
    this.status = status;
    this.body = body || {};
    this.retryAfter = retryAfter || null;
  }

  // Only the /auth calls that set or use the refresh cookie send and accept cookies; they carry
  // the header the service requires of cookie-authenticated calls (its CSRF defence).
  var COOKIE_PATHS = ['/auth/login', '/auth/register', '/auth/refresh', '/auth/logout'];

  function send(method, path, body, token) {
    var headers = { Accept: 'application/json', 'Accept-Language': lang };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = 'Bearer ' + token;
    var withCookie = COOKIE_PATHS.indexOf(path) >= 0;
    if (withCookie) headers['X-Requested-With'] = 'user-service';
    return fetch(path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: withCookie ? 'same-origin' : 'omit',
      cache: 'no-store',
      redirect: 'error'
    }).then(
      function (response) {
        var retry = response.headers.get('Retry-After');
        return response.text().then(function (text) {
          var data = null;
          try {
            data = text ? JSON.parse(text) : null;
          } catch (e) {
            data = null;
          }
          return { status: response.status, data: data, retryAfter: retry };
        });
      },
      function () {
        return { status: 0, data: null, retryAfter: null };
      }
    );
  }

  // A call with the session's access token; renews it once on 401, and ends the session when
  // renewal fails.
  function api(method, path, body) {
    return send(method, path, body, session.access).then(function (answer) {
      if (answer.status !== 401 || !session.renewable) return answer;
      return renew().then(function (renewed) {
        if (!renewed) return answer;
        return send(method, path, body, session.access);
      });
    }).then(function (answer) {
      if (answer.status === 401) {
        expire();
        throw new ApiError(401, { expired: true });
      }
      if (answer.status < 200 || answer.status >= 300) throw new ApiError(answer.status, answer.data, answer.retryAfter);
      return answer.data;
    });
  }

  // Renews the access token with the refresh cookie (one renewal at a time).
  function renew() {
    if (!refreshing) {
      var current = generation;
      refreshing = send('POST', '/auth/refresh', {}).then(function (answer) {
        refreshing = null;
        if (answer.status === 200 && answer.data && answer.data.access_token && generation === current) {
          session.access = answer.data.access_token;
          session.renewable = true;
          return true;
        }
        return false;
      });
    }
    return refreshing;
  }

  function describe(error, context) {
    var body = error.body || {};
    var detail = body.detail || '';
    var id = body.request_id ? ' ' + t('requestId', { id: body.request_id }) : '';
    if (error.status === 0) return t('network');
    if (error.status === 401 && context === 'login') return t('invalidLogin');
    if (error.status === 401) return t('expired');
    if (error.status === 409 && context === 'register') return t('emailTaken');
    if (error.status === 422 && context === 'register' && body.errors && body.errors[0] && body.errors[0].field === 'password') {
      return t('passwordPolicy', { detail: detail });
    }
    if (error.status === 429) return t('tooMany', { seconds: error.retryAfter || 60 });
    if (error.status === 503 && body.code === 'encryption_key_not_configured') return t('keyNotConfigured');
    if (error.status === 503) return t('unavailable') + id;
    if (error.status === 403) return t('forbidden', { detail: detail }) + id;
    return t('failed', { detail: detail || String(error.status) }) + id;
  }

  function report(error, context) {
    if (error instanceof ApiError) {
      if (error.body && error.body.expired) return; // expire() already said it
      say('error', describe(error, context));
    } else {
      say('error', t('failed', { detail: String(error && error.message ? error.message : error) }));
    }
  }

  // ---- views ----
  function showSignIn() {
    $('credentials-view').hidden = true;
    $('signin-view').hidden = false;
    $('sign-out').hidden = true;
    $('whoami').hidden = true;
    $('register-panel').hidden = !embeddedSignIn;
    $('signin-form').parentElement.hidden = !embeddedSignIn;
    $('token-panel').hidden = embeddedSignIn;
    var first = embeddedSignIn ? $('signin-email') : $('token-input');
    first.focus();
  }

  function showCredentials() {
    $('signin-view').hidden = true;
    $('credentials-view').hidden = false;
    $('sign-out').hidden = false;
    renderWhoami();
  }

  function renderWhoami() {
    var who = $('whoami');
    who.hidden = !session.email;
    who.textContent = session.email ? t('signedInAs', { email: session.email }) : '';
  }

  function resetForms() {
    ['signin-form', 'register-form', 'token-form', 'add-broker-form'].forEach(function (id) {
      $(id).reset();
    });
  }

  // Forgets the session and everything shown for it; requests still under way are ignored.
  function forget() {
    generation += 1;
    session = { access: null, renewable: false, email: null };
    credentials = [];
    extraBrokers = [];
    tradingPending = {};
    $('cards').textContent = '';
    resetForms();
  }

  function expire() {
    forget();
    showSignIn();
    say('error', t('expired'));
  }

  // Ends the session on the server too (the refresh cookie's family is revoked and the cookie
  // cleared), then forgets everything on the page.
  function signOut() {
    var ending = session.renewable ? send('POST', '/auth/logout', {}) : Promise.resolve(null);
    forget();
    return ending.then(function () {
      showSignIn();
      say('info', t('signedOut'));
    });
  }

  // ---- sign-in ----
  // `renewable`: signed in through /auth (the refresh cookie is set), not with a platform token.
  function startSession(tokens, greeting, renewable) {
    generation += 1;
    session.access = tokens.access_token;
    session.renewable = Boolean(renewable);
    resetForms();
    return api('GET', '/auth/me').then(
      function (me) {
        session.email = me && me.email ? me.email : null;
      },
      function (error) {
        if (error instanceof ApiError && error.status === 404 && embeddedSignIn === false) return; // external mode: no /auth/me
        throw error;
      }
    ).then(function () {
      showCredentials();
      if (greeting) say('success', greeting);
      else clearMessage();
      $('page-title').focus();
      return Promise.all([loadCredentials(), probeTestRoute()]);
    });
  }

  function onSignIn(event) {
    event.preventDefault();
    signIn({ form: 'signin', path: '/auth/login', status: 200, context: 'login', clearPassword: true });
  }

  function onRegister(event) {
    event.preventDefault();
    signIn({ form: 'register', path: '/auth/register', status: 201, context: 'register', welcome: t('welcome') });
  }

  // Sends the e-mail and password of one of the two forms and starts the session it answers.
  // The login form forgets the password at once; the register form keeps it for a correction.
  function signIn(how) {
    var email = $(how.form + '-email').value.trim();
    var password = $(how.form + '-password').value;
    if (how.clearPassword) $(how.form + '-password').value = '';
    say('info', t('loading'));
    send('POST', how.path, { email: email, password: password }).then(function (answer) {
      if (answer.status !== how.status) throw new ApiError(answer.status, answer.data, answer.retryAfter);
      return startSession(answer.data, how.welcome, true);
    }).catch(function (error) {
      report(error, how.context);
      $(how.form + '-password').focus();
    });
  }

  function onToken(event) {
    event.preventDefault();
    var token = $('token-input').value.trim();
    $('token-input').value = '';
    startSession({ access_token: token }).catch(function (error) {
      report(error, 'token');
    });
  }

  // ---- credentials ----
  function loadCredentials() {
    return api('GET', CREDENTIALS_ROUTE).then(function (data) {
      keyOutage = false;
      setAddBrokerEnabled(true);
      credentials = (data && data.credentials) || [];
      renderCards();
    }).catch(function (error) {
      var body = (error && error.body) || {};
      // A key outage: the service says what is stored; show it as stored but unavailable and
      // offer no edit until the key is back (one message, not one per action).
      keyOutage = error instanceof ApiError && error.status === 503 &&
        body.code === 'encryption_key_not_configured' && Array.isArray(body.credentials);
      credentials = keyOutage ? body.credentials : [];
      setAddBrokerEnabled(!keyOutage);
      renderCards();
      report(error, 'list');
    });
  }

  // Whether the connection-test route exists on this deployment: the button is shown only then.
  function probeTestRoute() {
    return send('POST', TEST_ROUTE, {}, session.access).then(function (answer) {
      testAvailable = answer.status !== 404 && answer.status !== 405 && answer.status !== 0;
      renderCards();
    });
  }

  function setAddBrokerEnabled(enabled) {
    Array.prototype.forEach.call($('add-broker-form').querySelectorAll('input, button'), function (control) {
      control.disabled = !enabled;
    });
  }

  function brokerName(id) {
    return Object.prototype.hasOwnProperty.call(DISPLAY_NAMES, id) ? DISPLAY_NAMES[id] : id;
  }

  function brokerIds() {
    var ids = KNOWN_BROKERS.map(function (b) { return b.id; });
    credentials.forEach(function (c) {
      if (ids.indexOf(c.broker) < 0) ids.push(c.broker);
    });
    extraBrokers.forEach(function (id) {
      if (ids.indexOf(id) < 0) ids.push(id);
    });
    return ids;
  }

  function findCredential(id) {
    for (var i = 0; i < credentials.length; i++) {
      if (credentials[i].broker === id) return credentials[i];
    }
    return null;
  }

  function formatDate(value) {
    if (!value) return t('never');
    var date = new Date(value);
    if (isNaN(date.getTime())) return String(value);
    return new Intl.DateTimeFormat(lang === 'fr' ? 'fr-FR' : 'en-GB', { dateStyle: 'medium', timeStyle: 'short' }).format(date);
  }

  function testLabel(status) {
    if (status === 'ok') return t('testOk');
    if (status === 'unauthorized') return t('testUnauthorized');
    if (status === 'network_error') return t('testNetwork');
    if (status === 'missing_credentials') return t('testMissing');
    return status;
  }

  var SHOWN_BULLETS = 8;

  // The service masks all but the last four characters; long masks are shortened to eight
  // bullets so that the last four stay readable on one line.
  function maskText(has, masked) {
    if (!has) return t('notSet');
    if (keyOutage) return t('storedUnavailable');
    if (masked === null || masked === undefined) return t('unreadable');
    var chars = Array.from(masked);
    var bullets = 0;
    while (bullets < chars.length && chars[bullets] === '\u2022') bullets++;
    if (bullets <= SHOWN_BULLETS) return masked;
    return chars.slice(bullets - SHOWN_BULLETS).join('');
  }

  var CARD_CONTROLS = ['trading-switch', 'key-input', 'secret-input', 'save', 'test', 'clear-key', 'clear-secret', 'delete'];

  // Re-draws every card; keeps what was typed in other cards and the keyboard focus.
  function renderCards() {
    var container = $('cards');
    var typed = {};
    var focus = null;
    Array.prototype.forEach.call(container.querySelectorAll('.card'), function (card) {
      var broker = card.getAttribute('data-broker');
      typed[broker] = [card.querySelector('.key-input').value, card.querySelector('.secret-input').value];
      if (card.contains(document.activeElement)) {
        CARD_CONTROLS.forEach(function (name) {
          if (document.activeElement.classList.contains(name)) focus = { broker: broker, control: name };
        });
      }
    });
    container.textContent = '';
    brokerIds().forEach(function (id, index) {
      var card = renderCard(id, index, findCredential(id));
      if (typed[id]) {
        card.querySelector('.key-input').value = typed[id][0];
        card.querySelector('.secret-input').value = typed[id][1];
      }
      container.appendChild(card);
    });
    if (focus) {
      var card = container.querySelector('[data-broker="' + cssEscape(focus.broker) + '"]');
      if (!card) {
        $('add-broker-input').focus();
      } else {
        var target = card.querySelector('.' + focus.control);
        (target && !target.hidden && !target.closest('[hidden]') ? target : card.querySelector('.key-input')).focus();
      }
    }
  }

  function renderCard(id, index, entry) {
    var card = $('card-template').content.firstElementChild.cloneNode(true);
    var name = brokerName(id);
    var titleId = 'card-' + index + '-title';
    card.setAttribute('data-broker', id);
    card.setAttribute('aria-labelledby', titleId);
    var title = card.querySelector('.card-title');
    title.id = titleId;
    title.textContent = name;
    translate(card);

    var hasKey = !!(entry && entry.has_api_key);
    var hasSecret = !!(entry && entry.has_api_secret);
    var broken = !!(entry && entry.status === 'undecryptable');
    var badge = card.querySelector('.badge');
    if (keyOutage && (hasKey || hasSecret)) {
      badge.textContent = t('keyOutageBadge');
      badge.className = 'badge badge-problem';
    } else if (broken) {
      badge.textContent = t('problem');
      badge.className = 'badge badge-problem';
    } else if (hasKey && hasSecret) {
      badge.textContent = t('configured');
      badge.className = 'badge badge-ok';
    } else if (hasKey || hasSecret) {
      badge.textContent = t('partial');
      badge.className = 'badge badge-partial';
    } else {
      badge.textContent = entry || KNOWN_BROKERS.some(function (b) { return b.id === id; }) ? t('empty') : t('notSaved');
      badge.className = 'badge';
    }
    var warning = card.querySelector('.warning');
    warning.hidden = !broken;
    warning.textContent = broken ? t('undecryptable') : '';

    var keyMask = card.querySelector('.key-mask');
    var secretMask = card.querySelector('.secret-mask');
    keyMask.textContent = maskText(hasKey, entry && entry.api_key_masked);
    secretMask.textContent = maskText(hasSecret, entry && entry.api_secret_masked);
    keyMask.classList.toggle('unset', !hasKey);
    secretMask.classList.toggle('unset', !hasSecret);
    keyMask.classList.toggle('unreadable', hasKey && !entry.api_key_masked);
    secretMask.classList.toggle('unreadable', hasSecret && !entry.api_secret_masked);
    card.querySelector('.updated-at').textContent = entry ? formatDate(entry.updated_at) : '—';
    card.querySelector('.last-test').textContent = entry && entry.last_test_status
      ? t('testedAt', { status: testLabel(entry.last_test_status), date: formatDate(entry.last_tested_at) })
      : t('never');

    var keyInput = card.querySelector('.key-input');
    var secretInput = card.querySelector('.secret-input');
    keyInput.id = 'card-' + index + '-key';
    secretInput.id = 'card-' + index + '-secret';

    // The owner's consent that the platform trades with this key: only on a stored credential
    // whose answer carries it (off by default; the service turns it off when the key changes).
    var trading = card.querySelector('.trading');
    var tradingSwitch = card.querySelector('.trading-switch');
    var tradingState = card.querySelector('.trading-state');
    var tradingOn = !!(entry && entry.trading_enabled === true);
    trading.hidden = !((hasKey || hasSecret) && typeof entry.trading_enabled === 'boolean');
    tradingSwitch.id = 'card-' + index + '-trading';
    tradingSwitch.checked = tradingOn;
    tradingState.textContent = tradingOn ? t('tradingOn') : t('tradingOff');
    tradingState.classList.toggle('on', tradingOn);
    card.querySelector('.trading-hint').id = 'card-' + index + '-trading-hint';
    tradingSwitch.setAttribute('aria-describedby', titleId + ' card-' + index + '-trading-hint');

    var buttons = card.querySelectorAll('button');
    for (var i = 0; i < buttons.length; i++) buttons[i].setAttribute('aria-describedby', titleId);
    var stored = hasKey || hasSecret;
    card.querySelector('.clear-key').hidden = !hasKey;
    card.querySelector('.clear-secret').hidden = !hasSecret;
    card.querySelector('.delete').hidden = !stored;
    card.querySelector('.secondary-actions').hidden = !stored;
    card.querySelector('.test').hidden = !(testAvailable && stored && TESTABLE_BROKERS.indexOf(id) >= 0);
    if (keyOutage) {
      Array.prototype.forEach.call(card.querySelectorAll('input, button'), function (control) {
        control.disabled = true;
      });
    }

    card.querySelector('.edit-form').addEventListener('submit', function (event) {
      event.preventDefault();
      save(id, keyInput, secretInput);
    });
    card.querySelector('.clear-key').addEventListener('click', function () {
      clearHalf(id, 'api_key', 'confirmClearKey', 'keyCleared');
    });
    card.querySelector('.clear-secret').addEventListener('click', function () {
      clearHalf(id, 'api_secret', 'confirmClearSecret', 'secretCleared');
    });
    card.querySelector('.delete').addEventListener('click', function () {
      remove(id);
    });
    card.querySelector('.test').addEventListener('click', function () {
      runTest(id);
    });
    tradingSwitch.addEventListener('change', function () {
      setTrading(id, tradingSwitch);
    });
    return card;
  }

  function put(entry) {
    return api('PUT', CREDENTIALS_ROUTE, { credentials: [entry] }).then(function (data) {
      credentials = (data && data.credentials) || [];
      renderCards();
    });
  }

  function tradingEnabled(id) {
    var entry = findCredential(id);
    return !!(entry && entry.trading_enabled === true);
  }

  // The success message of a change of the key or secret; says so when it turned trading off.
  function savedMessage(id, done, wasTrading) {
    var text = t(done, { broker: brokerName(id) });
    return wasTrading && !tradingEnabled(id) ? text + ' ' + t('tradingReset') : text;
  }

  // Sends the consent alone (no key or secret: the stored halves are kept) and re-draws the
  // cards from the answer. The switch keeps the focus; a second toggle while the first is on
  // its way is undone rather than sent.
  function setTrading(id, control) {
    if (tradingPending[id]) {
      control.checked = !control.checked;
      return;
    }
    tradingPending[id] = true;
    var wanted = control.checked;
    put({ broker: id, trading_enabled: wanted }).then(function () {
      tradingPending[id] = false;
      say('success', t(tradingEnabled(id) ? 'tradingEnabled' : 'tradingDisabled', { broker: brokerName(id) }));
    }).catch(function (error) {
      tradingPending[id] = false;
      renderCards(); // back to what the service last said
      report(error, 'trading');
    });
  }

  function save(id, keyInput, secretInput) {
    var entry = { broker: id };
    var key = keyInput.value;
    var secret = secretInput.value;
    if (key.trim() !== '') entry.api_key = key;
    if (secret.trim() !== '') entry.api_secret = secret;
    if (entry.api_key === undefined && entry.api_secret === undefined) {
      say('error', t('nothingToSave'));
      keyInput.focus();
      return;
    }
    // What was typed stays in the form until the save succeeds (the secret in its password
    // field), so a failed save can be retried; it is wiped once stored and on sign-out.
    var wasTrading = tradingEnabled(id);
    put(entry).then(function () {
      var card = $('cards').querySelector('[data-broker="' + cssEscape(id) + '"]');
      if (card) {
        card.querySelector('.key-input').value = '';
        card.querySelector('.secret-input').value = '';
      }
      keyInput.value = '';
      secretInput.value = '';
      say('success', savedMessage(id, 'saved', wasTrading));
    }).catch(function (error) {
      report(error, 'save');
    });
  }

  function clearHalf(id, field, question, done) {
    if (!window.confirm(t(question, { broker: brokerName(id) }))) return;
    var entry = { broker: id };
    entry[field] = null;
    var wasTrading = tradingEnabled(id);
    put(entry).then(function () {
      say('success', savedMessage(id, done, wasTrading));
    }).catch(function (error) {
      report(error, 'save');
    });
  }

  function remove(id) {
    if (!window.confirm(t('confirmDelete', { broker: brokerName(id) }))) return;
    api('DELETE', CREDENTIALS_ROUTE + '/' + encodeURIComponent(id)).then(function () {
      extraBrokers = extraBrokers.filter(function (b) { return b !== id; });
      say('success', t('deleted', { broker: brokerName(id) }));
      return loadCredentials();
    }).catch(function (error) {
      report(error, 'delete');
    });
  }

  // The service answers its test messages in the page's language (sent as Accept-Language);
  // the status gives a message if an older service sent none.
  function testMessage(result) {
    if (result.message) return result.message;
    if (result.status === 'ok') return t('testOkMessage');
    if (result.status === 'unauthorized') return t('testUnauthorizedMessage');
    if (result.status === 'network_error') return t('testNetworkMessage');
    return result.message || String(result.status);
  }

  function runTest(id) {
    say('info', t('testRunning', { broker: brokerName(id) }));
    api('POST', TEST_ROUTE, { broker: id }).then(function (result) {
      result = result || {};
      var kind = result.status === 'ok' ? 'success' : 'error';
      var message = testMessage(result);
      say(kind, t('testResult', { broker: brokerName(id), message: message }));
      return loadCredentials();
    }).catch(function (error) {
      report(error, 'test');
    });
  }

  function onAddBroker(event) {
    event.preventDefault();
    var input = $('add-broker-input');
    var id = input.value.trim().toLowerCase();
    if (!id || Array.from(id).length > MAX_BROKER_CHARS) {
      say('error', t('brokerInvalid'));
      input.focus();
      return;
    }
    input.value = '';
    if (brokerIds().indexOf(id) >= 0) {
      say('info', t('brokerExists', { broker: brokerName(id) }));
    } else {
      extraBrokers.push(id);
      renderCards();
      say('info', t('brokerAdded', { broker: id }));
    }
    var card = $('cards').querySelector('[data-broker="' + cssEscape(id) + '"]');
    if (card) card.querySelector('.key-input').focus();
  }

  function cssEscape(value) {
    return window.CSS && CSS.escape ? CSS.escape(value) : value.replace(/["\\]/g, '\\$&');
  }

  // ---- language ----
  function translate(root) {
    var nodes = root.querySelectorAll('[data-i18n]');
    for (var i = 0; i < nodes.length; i++) nodes[i].textContent = t(nodes[i].getAttribute('data-i18n'));
  }

  function applyLanguage() {
    document.documentElement.lang = lang;
    document.title = t('title');
    translate(document);
    var button = $('lang-switch');
    button.textContent = t('switchLabel');
    button.setAttribute('lang', t('switchLang'));
    button.setAttribute('aria-label', t('switchTo'));
    renderWhoami();
    if (!$('credentials-view').hidden) renderCards();
  }

  function switchLanguage() {
    lang = lang === 'fr' ? 'en' : 'fr';
    applyLanguage();
    clearMessage();
  }

  // ---- start ----
  function start() {
    $('signin-form').addEventListener('submit', onSignIn);
    $('register-form').addEventListener('submit', onRegister);
    $('token-form').addEventListener('submit', onToken);
    $('add-broker-form').addEventListener('submit', onAddBroker);
    $('sign-out').addEventListener('click', signOut);
    $('lang-switch').addEventListener('click', switchLanguage);
    $('page-title').setAttribute('tabindex', '-1');
    applyLanguage();
    // With AUTH_MODE=external the /auth routes answer 404: offer the platform-token form.
    // Otherwise a refresh cookie left by an earlier visit resumes the session.
    send('GET', '/auth/me').then(function (answer) {
      embeddedSignIn = answer.status !== 404;
      if (!embeddedSignIn) return showSignIn();
      return send('POST', '/auth/refresh', {}).then(function (renewed) {
        if (renewed.status === 200 && renewed.data && renewed.data.access_token) {
          return startSession(renewed.data, null, true).catch(function (error) {
            report(error, 'resume');
          });
        }
        showSignIn();
      });
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
